package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// errNoGo is returned by ctl cutover-check when a condition fails (exit 1).
var errNoGo = errors.New("not ready for cutover")

func runCtlCutoverCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("ctl cutover-check", "ctl cutover-check OLD NEW [--max-lag N] [--json]", stderr)
	maxLag := fs.Int64("max-lag", 100, "the most records NEW may still lag behind the log")
	asJSON := fs.Bool("json", false, "print JSON")
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(names) != 2 || names[0] == names[1] {
		fs.Usage()
		return fmt.Errorf("%w: name the old target and the new one", errUsage)
	}
	ops, err := openOps(*cfgPath, names...)
	if err != nil {
		return err
	}
	defer ops.Close()
	checks, err := ops.CutoverCheck(ctx, names[0], names[1], *maxLag)
	if err != nil {
		return err
	}
	ok := true
	for _, c := range checks {
		ok = ok && c.OK
	}
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(map[string]any{"go": ok, "checks": checks}); err != nil {
			return err
		}
	} else {
		for _, c := range checks {
			mark := "ok  "
			if !c.OK {
				mark = "NO  "
			}
			fmt.Fprintf(stdout, "%s %-24s %s\n", mark, c.Name, oneLine(c.Detail))
		}
		if ok {
			fmt.Fprintf(stdout, "GO: %s may take over from %s. Move the readers, then: sluice ctl retire %s\n", names[1], names[0], names[0])
		} else {
			fmt.Fprintf(stdout, "NO GO: %s may not take over from %s yet\n", names[1], names[0])
		}
	}
	if !ok {
		return errNoGo
	}
	return nil
}

func runCtlRetire(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("ctl retire", "ctl retire TARGET [--wait D]", stderr)
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for every replica to stop")
	names, err := oneTarget(fs, args)
	if err != nil {
		return err
	}
	ops, err := controlFor(ctx, *cfgPath, names[0])
	if err != nil {
		return err
	}
	defer ops.Close()
	res, err := ops.Retire(ctx, names[0], operator(), *wait)
	if err != nil {
		return err
	}
	if !res.Stopped {
		fmt.Fprintf(stdout, "target %s is retired, but some replica still reports after %v: it stops when it next reads the control topic; run this again to remove its consumer group\n", names[0], *wait)
	} else {
		fmt.Fprintf(stdout, "target %s retired: every replica stopped, consumer group removed\n", names[0])
	}
	fmt.Fprintf(stdout, "its database still holds %d ledger events and the tables %s: sluice drops nothing; that is yours to decide\n",
		res.LedgerEvents, strings.Join(res.Tables, ", "))
	return nil
}
