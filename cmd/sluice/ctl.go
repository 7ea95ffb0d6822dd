package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/consumer"
)

const ctlUsage = `Usage: sluice ctl <command> [flags]

Commands:
  status [TARGET…]   per target: state, applier, breaker, lag (messages and seconds,
                     per partition), apply rate, and the database sessions blocking it
  pause TARGET       every replica stops fetching within a second (no transaction held)
  resume TARGET      undo pause
  rewind TARGET --to TIME | --to-offset earliest|N
                     every replica seeks every partition there and replays (idempotent)
  dlq list TARGET    the target's dead-lettered events still pending (--all: every one)
  dlq replay TARGET  apply them again once their cause is fixed
  verify A B [--from TIME] [--to TIME] [--bucket D]
                     compare two targets: counts and checksums of (source, id) per
                     time bucket; exit 1 naming the first bucket that differs

Run 'sluice ctl <command> --help' for its flags.
`

func runCtl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
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
	case "verify":
		return runCtlVerify(ctx, args[1:], stdout, stderr)
	case "dlq":
		return runCtlDLQ(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, ctlUsage)
		return nil
	}
	fmt.Fprint(stderr, ctlUsage)
	return fmt.Errorf("%w: unknown ctl command %q", errUsage, args[0])
}

// targetView is one target's line of `ctl status`: what the target's
// database and Kafka say (consumer.Inspect) and what its applier says of
// itself (its /metrics).
type targetView struct {
	consumer.TargetStatus
	State   string `json:"state"`   // running or paused: the desired state
	Applier string `json:"applier"` // up, unreachable, unknown: what its metrics say
	Breaker string `json:"breaker"` // closed, half-open, open, unknown
	// Rewind is the last rewind issued for the target, if any.
	Rewind *consumer.Rewind `json:"rewind,omitempty"`
}

func runCtlStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("ctl status", "ctl status [TARGET…] [--json]", stderr)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, os.Getenv)
	if err != nil {
		return err
	}
	targets := cfg.Targets
	if len(names) > 0 {
		targets = nil
		for _, name := range names {
			t, err := cfg.target(name)
			if err != nil {
				return err
			}
			targets = append(targets, t)
		}
	}
	ctl := consumer.NewControl(cfg.Kafka.Brokers, "")
	defer ctl.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	desired, err := ctl.Current(cctx)
	cancel()
	if err != nil {
		desired = nil // no control topic yet: nobody paused anything
	}
	views := make([]targetView, 0, len(targets))
	for _, t := range targets {
		ictx, cancel := context.WithTimeout(ctx, 15*time.Second)
		st, err := consumer.Inspect(ictx, consumer.InspectConfig{
			Target: t.Name, Brokers: cfg.Kafka.Brokers, Topic: cfg.Kafka.Topic, DSN: t.DSN,
		})
		cancel()
		if err != nil {
			return fmt.Errorf("target %s: %w", t.Name, err)
		}
		v := targetView{TargetStatus: st, State: "running", Applier: "unknown", Breaker: "unknown"}
		if d, ok := desired[t.Name]; ok {
			if d.Paused {
				v.State = "paused"
			}
			v.Rewind = d.Rewind
		}
		if t.Listen != "" {
			v.Applier, v.Breaker = scrapeApplier(ctx, t)
		}
		views = append(views, v)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(views)
	}
	printStatus(stdout, views)
	return nil
}

// scrapeApplier reads the applier's own view from its /metrics.
func scrapeApplier(ctx context.Context, t targetConfig) (applier, breaker string) {
	host, port, err := net.SplitHostPort(t.Listen)
	if err != nil {
		return "unknown", "unknown"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "unreachable", "unknown"
	}
	defer resp.Body.Close()
	series := `sluice_breaker_state{target="` + t.Name + `"} `
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return "up", consumer.BreakerState(int(n)).String()
		}
	}
	return "up", "unknown"
}

func printStatus(w io.Writer, views []targetView) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tSTATE\tAPPLIER\tBREAKER\tLAG MSGS\tLAG SECONDS\tAPPLY/S")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.1f\t%.0f\n", v.Target, v.State, v.Applier, v.Breaker, v.LagMessages, v.LagSeconds, v.ApplyRate)
	}
	tw.Flush()
	for _, v := range views {
		fmt.Fprintf(w, "\n%s, per partition:\n", v.Target)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PARTITION\tLOG START\tLOG END\tAPPLIED TO\tLAG MSGS\tLAG SECONDS\tFROM")
		for _, p := range v.Partitions {
			fmt.Fprintf(tw, "  %d\t%d\t%d\t%d\t%d\t%.1f\t%s\n", p.Partition, p.LogStart, p.LogEnd, p.Applied, p.LagMessages, p.LagSeconds, p.From)
		}
		tw.Flush()
		if v.DatabaseError != "" {
			fmt.Fprintf(w, "  database: %s\n", v.DatabaseError)
		}
		for _, b := range v.Blocking {
			fmt.Fprintf(w, "  BLOCKING: pid %d (user %s, application %q, client %s) %s for %.0fs, transaction open %.0fs\n",
				b.PID, b.User, b.Application, b.Client, b.State, b.StateAge, b.TransactionAge)
			fmt.Fprintf(w, "    %s\n    query: %s\n    to end it: SELECT pg_terminate_backend(%d);\n", b.Why, oneLine(b.Query), b.PID)
		}
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
