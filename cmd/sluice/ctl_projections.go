package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/targetdb"
)

// rebuildTimeout bounds a rebuild, which replays a whole ledger: far longer
// than other ctl commands.
const rebuildTimeout = 6 * time.Hour

func runCtlProjections(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	test := len(args) > 0 && args[0] == "test"
	if test {
		args = args[1:]
	}
	synopsis := "ctl projections TARGET [--json] | ctl projections test TARGET [--last N]"
	fs, cfgPath := newFlags("ctl projections", synopsis, stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	last := fs.Int("last", 100, "with test: run the projections over the target's last N ledger events, then roll back")
	names, err := oneTarget(fs, args)
	if err != nil {
		return err
	}
	ops, err := openOps(*cfgPath, names[0])
	if err != nil {
		return err
	}
	defer ops.Close()
	if test {
		results, err := ops.DryRunProjections(ctx, names[0], *last)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(results)
		}
		fmt.Fprintf(stdout, "dry run of %s's projections over its last %d events (rolled back: nothing changed):\n", names[0], *last)
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PROJECTION\tROWS\tTOOK\tERROR")
		failed := false
		for _, r := range results {
			msg := ""
			if r.Err != nil {
				msg, failed = oneLine(r.Err.Error()), true
			}
			fmt.Fprintf(tw, "%s\t%d\t%v\t%s\n", r.Projection, r.Rows, r.Took.Round(time.Microsecond), msg)
		}
		tw.Flush()
		if failed {
			return fmt.Errorf("a projection fails on the target's own events")
		}
		return nil
	}
	views, err := ops.Projections(ctx, names[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(views)
	}
	if len(views) == 0 {
		fmt.Fprintf(stdout, "target %s has no projections: it holds the ledger only\n", names[0])
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECTION\tTYPES\tREPLICA\tROWS\tLAST TOOK\tLAST ERROR")
	for _, v := range views {
		types := strings.Join(v.Types, ",")
		if types == "" {
			types = "(all)"
		}
		replicas := make([]string, 0, len(v.Replicas))
		for r := range v.Replicas {
			replicas = append(replicas, r)
		}
		sort.Strings(replicas)
		if len(replicas) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t(no live replica)\t\t\t\n", v.Name, types)
		}
		for _, r := range replicas {
			st := v.Replicas[r]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\t%s\n", v.Name, types, r, st.Rows, st.LastDuration.Round(time.Microsecond), oneLine(st.LastError))
		}
	}
	return tw.Flush()
}

func runCtlRebuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("ctl rebuild", "ctl rebuild TARGET [PROJECTION]", stderr)
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(names) < 1 || len(names) > 2 {
		fs.Usage()
		return fmt.Errorf("%w: name a target, and optionally one of its projections", errUsage)
	}
	only := ""
	if len(names) == 2 {
		only = names[1]
	}
	ops, err := openOps(*cfgPath, names[0])
	if err != nil {
		return err
	}
	defer ops.Close()
	fmt.Fprintf(stderr, "rebuilding %s from its own ledger; readers see the old state until it commits, and the applier waits meanwhile\n", names[0])
	var rebuilt []string
	n, err := ops.Rebuild(ctx, names[0], only, func(p targetdb.RebuildProgress) {
		if p.Done == 0 {
			rebuilt = p.Projections
			fmt.Fprintf(stderr, "  projections: %s\n", strings.Join(p.Projections, ", "))
			return
		}
		eta := "?"
		if p.Done > 0 {
			eta = (time.Duration(float64(p.Elapsed) * float64(p.Total-p.Done) / float64(p.Done))).Round(time.Second).String()
		}
		fmt.Fprintf(stderr, "\r  %d of %d events (%.0f%%), %v elapsed, about %s to go   ", p.Done, p.Total,
			100*float64(p.Done)/float64(max(p.Total, 1)), p.Elapsed.Round(time.Second), eta)
	})
	fmt.Fprintln(stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "target %s: rebuilt %s from %d ledger events\n", names[0], strings.Join(rebuilt, ", "), n)
	if only != "" && len(rebuilt) > 1 {
		fmt.Fprintf(stdout, "  %s's reset changed the tables of %s, so they were rebuilt too\n", only,
			strings.Join(slices.DeleteFunc(slices.Clone(rebuilt), func(n string) bool { return n == only }), ", "))
	}
	return nil
}
