package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/operations"
)

const ctlUsage = `Usage: sluice ctl <command> [flags]

Commands:
  status [TARGET…]   per target: state, applier, breaker, lag (messages and seconds,
                     per partition), apply rate, and the database sessions blocking it
  pause TARGET       every replica stops fetching within a second (no transaction held)
  resume TARGET      undo pause
  rewind TARGET --to TIME | --to-offset earliest|N
                     every replica seeks every partition back there and replays
                     (idempotent); a rewind never moves a partition forward
  skip TARGET --to-offset latest|N [--yes]
                     move every partition FORWARD: the events passed over are never
                     applied to the target. Shows what it would skip; --yes does it
  projections TARGET the target's projections: rows, last duration, last error per replica
  projections test TARGET [--last N]
                     run them over the last N ledger events and roll back: what would change
  rebuild TARGET [PROJECTION]
                     recompute projections from the target's own ledger (no Kafka needed);
                     readers see the old state until the new one is complete
  cutover-check OLD NEW
                     may NEW take over from OLD? each condition printed (caught up, breaker,
                     projections, DLQ, verify up to the common watermark, both targets'
                     projections equal a replay of their ledgers); exit 0 only on GO
  retire TARGET      stop every replica of TARGET's applier for good, remove its consumer
                     group, and say what its database still holds
  dlq list TARGET    the target's dead-lettered events still pending (--all: every one)
  dlq replay TARGET  apply them again once their cause is fixed
  verify A B [--from TIME] [--to TIME] [--bucket D] [--keys N]
                     compare two targets event by event (whole content, every time
                     unless bounded): checksums per time bucket; exit 1 naming the
                     buckets that differ and up to N differing events; then recompute
                     each target's projections from its own ledger beside the live
                     tables and compare row by row (--replay=false: ledgers only)

Run 'sluice ctl <command> --help' for its flags.
`

// ctlSession is what one ctl command works with.
type ctlSession struct {
	cfg     *config
	cluster *kafkaadmin.Cluster
	*operations.Ops
}

// openOps loads the configuration, checks the named targets, and returns
// the operator's view of the deployment; Close it when done.
func openOps(cfgPath string, targets ...string) (*ctlSession, error) {
	cfg, err := loadConfig(cfgPath, os.Getenv)
	if err != nil {
		return nil, err
	}
	for _, name := range targets {
		if _, err := cfg.target(name); err != nil {
			return nil, err
		}
	}
	cluster := cfg.cluster(nil)
	ops, err := cfg.operations(cluster)
	if err != nil {
		cluster.Close()
		return nil, err
	}
	return &ctlSession{cfg: cfg, cluster: cluster, Ops: ops}, nil
}

// Close releases the session's Kafka connections.
func (s *ctlSession) Close() {
	_ = s.Ops.Close()
	s.cluster.Close()
}

// ctlTimeout bounds every ctl command but status --watch: an operator is
// told that Kafka or a target does not answer instead of waiting forever.
const ctlTimeout = 2 * time.Minute

func runCtl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && !(args[0] == "status" && contains(args, "--watch")) {
		limit := ctlTimeout
		if args[0] == "rebuild" {
			limit = rebuildTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, ctlUsage)
		return fmt.Errorf("%w: ctl needs a command", errUsage)
	}
	switch args[0] {
	case "status":
		return runCtlStatus(ctx, args[1:], stdout, stderr)
	case "pause":
		return runCtlPause(ctx, args[1:], stdout, stderr, true)
	case "resume":
		return runCtlPause(ctx, args[1:], stdout, stderr, false)
	case "rewind":
		return runCtlRewind(ctx, args[1:], stdout, stderr)
	case "skip":
		return runCtlSkip(ctx, args[1:], stdout, stderr)
	case "verify":
		return runCtlVerify(ctx, args[1:], stdout, stderr)
	case "dlq":
		return runCtlDLQ(ctx, args[1:], stdout, stderr)
	case "projections":
		return runCtlProjections(ctx, args[1:], stdout, stderr)
	case "rebuild":
		return runCtlRebuild(ctx, args[1:], stdout, stderr)
	case "cutover-check":
		return runCtlCutoverCheck(ctx, args[1:], stdout, stderr)
	case "retire":
		return runCtlRetire(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, ctlUsage)
		return nil
	}
	fmt.Fprint(stderr, ctlUsage)
	return fmt.Errorf("%w: unknown ctl command %q", errUsage, args[0])
}

func runCtlStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("ctl status", "ctl status [TARGET…] [--json]", stderr)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	watch := fs.Bool("watch", false, "refresh until interrupted, with each target's lag trend and time to catch up")
	interval := fs.Duration("interval", 2*time.Second, "refresh interval of --watch")
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	ops, err := openOps(*cfgPath, names...)
	if err != nil {
		return err
	}
	defer ops.Close()
	if *watch {
		return watchStatus(ctx, stdout, ops, names, *interval)
	}
	views, err := ops.Status(ctx, names...)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(views)
	}
	printStatus(stdout, views)
	return nil
}

// watchStatus redraws the status every interval with each target's lag
// trend (messages per second, + growing, − shrinking) and, while the lag
// shrinks, an estimate of the time to catch up.
func watchStatus(ctx context.Context, w io.Writer, ops *ctlSession, names []string, interval time.Duration) error {
	prev := map[string]int64{}
	var prevAt time.Time
	for {
		views, err := ops.Status(ctx, names...)
		now := time.Now()
		fmt.Fprint(w, "\033[H\033[2J") // clear the terminal
		fmt.Fprintf(w, "sluice status at %s (every %v; Ctrl-C to stop)\n\n", now.Format(time.TimeOnly), interval)
		if err != nil {
			fmt.Fprintf(w, "error: %v\n", err)
		} else {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TARGET\tSTATE\tAPPLIER\tBREAKER\tLAG MSGS\tLAG SECONDS\tTREND\tCATCH UP IN\tAPPLY/S")
			for _, v := range views {
				trend, eta := "", ""
				if len(v.LagUnknown) > 0 {
					eta = "never: log moved (see ctl status)"
				} else if last, ok := prev[v.Target]; ok && last >= 0 && !prevAt.IsZero() {
					rate := float64(v.LagMessages-last) / now.Sub(prevAt).Seconds()
					trend = fmt.Sprintf("%+.0f/s", rate)
					switch {
					case v.LagMessages == 0:
						eta = "caught up"
					case rate < 0:
						eta = (time.Duration(float64(v.LagMessages)/-rate) * time.Second).Round(time.Second).String()
					default:
						eta = "not catching up"
					}
				}
				prev[v.Target] = v.LagMessages
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.1f\t%s\t%s\t%.0f\n", v.Target, v.State, v.Applier, v.Breaker,
					v.LagText(), v.LagSeconds, trend, eta, v.ApplyRate)
			}
			tw.Flush()
			for _, v := range views {
				for _, b := range v.Blocking {
					fmt.Fprintf(w, "\n%s BLOCKED by pid %d (%s, %s for %.0fs): %s\n  %s\n", v.Target, b.PID, b.Application,
						b.State, b.StateAge, b.Why, oneLine(b.Query))
				}
			}
			prevAt = now
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

func printStatus(w io.Writer, views []operations.TargetView) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tSTATE\tAPPLIER\tBREAKER\tLAG MSGS\tLAG SECONDS\tAPPLY/S")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.1f\t%.0f\n", v.Target, v.State, v.Applier, v.Breaker,
			v.LagText(), v.LagSeconds, v.ApplyRate)
	}
	tw.Flush()
	for _, v := range views {
		fmt.Fprintf(w, "\n%s, per partition:\n", v.Target)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PARTITION\tLOG START\tLOG END\tAPPLIED TO\tLAG MSGS\tLAG SECONDS\tFROM")
		for _, p := range v.Partitions {
			fmt.Fprintf(tw, "  %d\t%d\t%d\t%d\t%s\t%.1f\t%s\n", p.Partition, p.LogStart, p.LogEnd, p.Applied,
				p.LagText(), p.LagSeconds, p.From)
		}
		tw.Flush()
		if v.DatabaseError != "" {
			fmt.Fprintf(w, "  database: %s\n", v.DatabaseError)
		}
		for _, r := range v.Replicas {
			if r.LastError != "" {
				fmt.Fprintf(w, "  replica %s: last error: %s\n", r.Replica, oneLine(r.LastError))
			}
			if r.BlockerPolicyCannotAct != "" {
				fmt.Fprintf(w, "  replica %s: BLOCKER POLICY CANNOT ACT: %s — %s\n", r.Replica, r.BlockerPolicy, r.BlockerPolicyCannotAct)
			}
			for _, b := range r.Blockers {
				fmt.Fprintf(w, "  replica %s: %s pid %d at %s (user %s, application %q, client %s, %s, transaction open %v)\n",
					r.Replica, strings.ToUpper(b.Action), b.PID, b.At.Format(time.RFC3339), b.User, b.Application, b.Client, b.State,
					b.TransactionAge.Round(time.Second))
				if b.Why != "" {
					fmt.Fprintf(w, "    why: %s\n", b.Why)
				}
				fmt.Fprintf(w, "    held: %s\n    query: %s\n", b.Locks, oneLine(b.Query))
			}
			for _, pr := range r.Projections {
				if pr.LastError != "" {
					fmt.Fprintf(w, "  replica %s: PROJECTION %s FAILING: %s\n", r.Replica, pr.Name, oneLine(pr.LastError))
				}
			}
		}
		for _, p := range v.Partitions {
			if p.LogPassed {
				fmt.Fprintf(w, "  LOG START PASSED: partition %d was applied up to %d but the log starts at %d: retention deleted %d records this target never applied\n",
					p.Partition, p.Applied, p.LogStart, p.LogStart-p.Applied)
			}
			if p.LagUnknown && !p.AheadOfLog && !p.LogPassed {
				fmt.Fprintf(w, "  LOG MOVED: partition %d: the record at the target's position %d is not the one it applied (topic recreated);\n"+
					"    it applies nothing until you choose: sluice ctl rewind %s --to-offset earliest\n", p.Partition, p.Applied, v.Target)
			}
			if p.AheadOfLog {
				fmt.Fprintf(w, "  LOG MOVED: partition %d was applied up to %d but the log ends at %d (topic recreated or truncated);\n"+
					"    it applies nothing until you choose: sluice ctl rewind %s --to-offset earliest\n", p.Partition, p.Applied, p.LogEnd, v.Target)
			}
		}
		for _, b := range v.Blocking {
			fmt.Fprintf(w, "  BLOCKING: pid %d (user %s, application %q, client %s) %s for %.0fs, transaction open %.0fs\n",
				b.PID, b.User, b.Application, b.Client, b.State, b.StateAge, b.TransactionAge)
			fmt.Fprintf(w, "    %s\n    query: %s\n    to end it: SELECT pg_terminate_backend(%d);\n", b.Why, oneLine(b.Query), b.PID)
		}
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func contains(args []string, s string) bool {
	for _, a := range args {
		if a == s || a == s+"=true" {
			return true
		}
	}
	return false
}
