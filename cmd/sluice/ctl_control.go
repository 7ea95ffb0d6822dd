package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/sluicehq/sluice/consumer"
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
func controlFor(ctx context.Context, cfgPath, target string) (*config, *consumer.Control, error) {
	cfg, err := loadConfig(cfgPath, os.Getenv)
	if err != nil {
		return nil, nil, err
	}
	if _, err := cfg.target(target); err != nil {
		return nil, nil, err
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := ensureTopics(tctx, cfg.Kafka.Brokers, cfg.Kafka.ReplicationFactor, []topicSpec{controlTopic()}); err != nil {
		return nil, nil, fmt.Errorf("kafka: %w", err)
	}
	return cfg, consumer.NewControl(cfg.Kafka.Brokers, ""), nil
}

func runCtlPause(ctx context.Context, args []string, stdout, stderr io.Writer, pause bool) error {
	verb := map[bool]string{true: "pause", false: "resume"}[pause]
	fs, cfgPath := newFlags("ctl "+verb, "ctl "+verb+" TARGET", stderr)
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(names) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: name exactly one target", errUsage)
	}
	_, ctl, err := controlFor(ctx, *cfgPath, names[0])
	if err != nil {
		return err
	}
	defer ctl.Close()
	changed, err := ctl.SetPaused(ctx, names[0], pause, operator())
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
	req := consumer.RewindRequest{ToOffset: *toOffset}
	if *to != "" {
		t, err := time.Parse(time.RFC3339Nano, *to)
		if err != nil {
			return fmt.Errorf("%w: --to %q is not an RFC 3339 time (e.g. 2025-05-09T14:00:00Z)", errUsage, *to)
		}
		req.ToTime = &t
	}
	cfg, ctl, err := controlFor(ctx, *cfgPath, names[0])
	if err != nil {
		return err
	}
	defer ctl.Close()
	rw, err := ctl.IssueRewind(ctx, names[0], cfg.Kafka.Topic, req, operator())
	if err != nil {
		if errors.Is(err, consumer.ErrBadRewind) {
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
