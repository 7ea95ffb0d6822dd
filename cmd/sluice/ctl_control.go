package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/sluicehq/sluice/control"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
)

// operator names who asks, for the desired state's "by".
func operator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return "ctl:" + name + "@" + host
}

// controlFor loads the configuration, checks the target and makes sure the
// control topic exists.
func controlFor(ctx context.Context, cfgPath, target string) (*ctlSession, error) {
	ops, err := openOps(cfgPath, target)
	if err != nil {
		return nil, err
	}
	tctx, cancel := context.WithTimeout(ctx, 3*kafkaadmin.RequestTimeout)
	defer cancel()
	if err := ops.cluster.EnsureTopics(tctx, ops.cfg.Kafka.ReplicationFactor, kafkaadmin.ControlTopicSpec()); err != nil {
		ops.Close()
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return ops, nil
}

func runCtlPause(ctx context.Context, args []string, stdout, stderr io.Writer, pause bool) error {
	verb := map[bool]string{true: "pause", false: "resume"}[pause]
	fs, cfgPath := newFlags("ctl "+verb, "ctl "+verb+" TARGET", stderr)
	names, err := oneTarget(fs, args)
	if err != nil {
		return err
	}
	ops, err := controlFor(ctx, *cfgPath, names[0])
	if err != nil {
		return err
	}
	defer ops.Close()
	changed, err := ops.Control().SetPaused(ctx, names[0], pause, operator())
	if err != nil {
		return err
	}
	switch {
	case !changed && pause:
		fmt.Fprintf(stdout, "target %s is already paused: nothing to do\n", names[0])
	case !changed:
		fmt.Fprintf(stdout, "target %s is not paused: nothing to do\n", names[0])
	case pause:
		fmt.Fprintf(stdout, "target %s paused: every applier replica stops fetching within a second and holds no transaction\n", names[0])
	default:
		fmt.Fprintf(stdout, "target %s resumed\n", names[0])
	}
	return nil
}

func runCtlRewind(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("ctl rewind", "ctl rewind TARGET (--to RFC3339-TIME | --to-offset earliest|N)", stderr)
	to := fs.String("to", "", "rewind every partition to the first record at or after this time (RFC 3339)")
	toOffset := fs.String("to-offset", "", `rewind every partition to this offset: "earliest" or a number`)
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(names) != 1 || (*to == "") == (*toOffset == "") {
		fs.Usage()
		return fmt.Errorf("%w: name one target and exactly one of --to or --to-offset", errUsage)
	}
	req := control.RewindRequest{ToOffset: *toOffset}
	if *to != "" {
		t, err := time.Parse(time.RFC3339Nano, *to)
		if err != nil {
			return fmt.Errorf("%w: --to %q is not an RFC 3339 time (e.g. 2025-05-09T14:00:00Z)", errUsage, *to)
		}
		req.ToTime = &t
	}
	ops, err := controlFor(ctx, *cfgPath, names[0])
	if err != nil {
		return err
	}
	defer ops.Close()
	rw, err := ops.Control().IssueRewind(ctx, names[0], ops.EventsTopic(), req, operator())
	if err != nil {
		if errors.Is(err, control.ErrBadRewind) {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		return err
	}
	fmt.Fprintf(stdout, "target %s: rewind %s issued; every partition seeks to:\n", names[0], rw.ID)
	for p := 0; p < len(rw.Offsets); p++ {
		fmt.Fprintf(stdout, "  partition %d → offset %d\n", p, rw.Offsets[p])
	}
	fmt.Fprintln(stdout, "replay is safe: applying is idempotent. Follow it with: sluice ctl status --watch")
	return nil
}

func runCtlSkip(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("ctl skip", "ctl skip TARGET --to-offset latest|N [--yes]", stderr)
	toOffset := fs.String("to-offset", "", `move every partition forward to this offset: "latest" (the log end) or a number`)
	yes := fs.Bool("yes", false, "skip for real: without it, only show what would be skipped")
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(names) != 1 || *toOffset == "" {
		fs.Usage()
		return fmt.Errorf("%w: name one target and --to-offset", errUsage)
	}
	ops, err := controlFor(ctx, *cfgPath, names[0])
	if err != nil {
		return err
	}
	defer ops.Close()
	t, _ := ops.Target(names[0])
	skip, err := ops.Control().ResolveSkip(ctx, ops.EventsTopic(), *toOffset)
	if err != nil {
		if errors.Is(err, control.ErrBadRewind) {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		return err
	}
	st, err := ops.Inspect(ctx, t)
	if err != nil {
		return err
	}
	var total int64
	fmt.Fprintf(stdout, "skip on target %s: these events will NEVER be applied to it:\n", t.Name)
	for _, p := range st.Partitions {
		to := skip.Offsets[p.Partition]
		n := max(to-p.Applied, 0)
		total += n
		fmt.Fprintf(stdout, "  partition %d: %d → %d (%d events skipped)\n", p.Partition, p.Applied, max(to, p.Applied), n)
	}
	if !*yes {
		fmt.Fprintf(stdout, "nothing skipped yet: %d events would be lost to %s. Run again with --yes to skip.\n", total, t.Name)
		return fmt.Errorf("%w: skip not confirmed (--yes)", errUsage)
	}
	if err := ops.Control().IssueSkip(ctx, t.Name, skip, operator()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "skip %s issued by %s: every replica moves forward within a second; it is recorded in %s\n",
		skip.ID, operator(), kafkaadmin.ControlTopic)
	return nil
}
