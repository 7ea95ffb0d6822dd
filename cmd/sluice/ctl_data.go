package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/deadletter"
	"github.com/sluicehq/sluice/internal/targetdb"
	"github.com/sluicehq/sluice/operations"
)

// errDiffer is returned by ctl verify when the targets differ (exit 1).
var errDiffer = errors.New("targets differ")

func runCtlVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("ctl verify", "ctl verify TARGET TARGET [--from TIME] [--to TIME] [--bucket D] [--keys N] [--watermark] [--json]", stderr)
	from := fs.String("from", "", "compare events whose time is at or after this (RFC 3339; default: all)")
	to := fs.String("to", "", "compare events whose time is before this (RFC 3339; default: all)")
	bucket := fs.Duration("bucket", time.Minute, "width of a compared time bucket")
	keys := fs.Int("keys", 20, "name up to this many differing events (source/id), 0 for none")
	watermark := fs.Bool("watermark", false, "compare only the events both targets have passed (per partition, below the lower position): for a target still catching up")
	asJSON := fs.Bool("json", false, "print JSON")
	replay := fs.Bool("replay", true, "also recompute each target's projections from its own ledger and compare them with the live tables (--replay=false: ledgers only)")
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(names) != 2 {
		fs.Usage()
		return fmt.Errorf("%w: name two targets", errUsage)
	}
	ops, err := openOps(*cfgPath, names...)
	if err != nil {
		return err
	}
	defer ops.Close()
	ta, tb := names[0], names[1]
	vc := operations.VerifyRequest{A: ta, B: tb, Bucket: *bucket, Keys: max(*keys, 0), UpToWatermark: *watermark}
	for flagName, p := range map[string]*string{"--from": from, "--to": to} {
		if *p == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, *p)
		if err != nil {
			return fmt.Errorf("%w: %s %q is not an RFC 3339 time", errUsage, flagName, *p)
		}
		if flagName == "--from" {
			vc.From = t
		} else {
			vc.To = t
		}
	}
	res, err := ops.Verify(ctx, vc)
	if err != nil {
		return err
	}
	differ := res.FirstDiff != nil
	replays := map[string]targetdb.ReplayResult{}
	if *replay {
		for _, name := range names {
			rc, err := ops.ReplayCheck(ctx, name, max(*keys, 0), func(p targetdb.RebuildProgress) {
				fmt.Fprintf(stderr, "\r  replaying %s: %d of %d ledger events   ", name, p.Done, p.Total)
			})
			fmt.Fprint(stderr, "\r\033[K")
			if err != nil {
				return err
			}
			replays[name] = rc
			differ = differ || !rc.Same()
		}
	}
	var facts *operations.FactsResult
	if fr, err := ops.CompareFacts(ctx, ta, tb, max(*keys, 0)); err == nil {
		facts = &fr
		differ = differ || !fr.Same()
	} else if !errors.Is(err, operations.ErrNoFacts) {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		out := struct {
			operations.VerifyResult
			Replay map[string]targetdb.ReplayResult `json:"replay,omitempty"`
			Facts  *operations.FactsResult          `json:"facts,omitempty"`
		}{res, replays, facts}
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printVerify(stdout, ta, tb, *bucket, res)
		for _, name := range names {
			if rc, ok := replays[name]; ok {
				verdict := "REPLAY EQUAL"
				if !rc.Same() {
					verdict = "REPLAY DIFFERS"
				}
				fmt.Fprintf(stdout, "%s: %s\n", verdict, rc.Summary(name))
			}
		}
		switch {
		case facts == nil:
			fmt.Fprintf(stdout, "FACTS NOT COMPARED: declare facts: (a query of canonical rows, key first) for both targets\n")
		case facts.Same():
			fmt.Fprintf(stdout, "FACTS EQUAL: %s\n", facts.Summary(ta, tb))
		default:
			fmt.Fprintf(stdout, "FACTS DIFFER: %s\n", facts.Summary(ta, tb))
		}
	}
	if differ {
		return errDiffer
	}
	return nil
}

// maxPrintedBuckets bounds the differing buckets ctl verify prints.
const maxPrintedBuckets = 20

func printVerify(w io.Writer, ta, tb string, width time.Duration, res operations.VerifyResult) {
	if len(res.Differing) == 0 {
		fmt.Fprintf(w, "%s and %s agree: %d events in %d buckets of %v (whole content of every event compared)\n",
			ta, tb, res.Events, len(res.Buckets), width)
		return
	}
	fmt.Fprintf(w, "%s and %s differ in %d of %d buckets of %v:\n", ta, tb, len(res.Differing), len(res.Buckets), width)
	for i, d := range res.Differing {
		if i == maxPrintedBuckets {
			fmt.Fprintf(w, "  … and %d more (--json lists them all)\n", len(res.Differing)-i)
			break
		}
		where := "events without a time"
		if !d.Start.IsZero() {
			where = fmt.Sprintf("[%s, %s)", d.Start.Format(time.RFC3339), d.Start.Add(width).Format(time.RFC3339))
		}
		fmt.Fprintf(w, "  %s: %s has %d events (checksum %s), %s has %d (checksum %s)\n", where, ta, d.CountA, d.SumA, tb, d.CountB, d.SumB)
	}
	if len(res.Keys) > 0 {
		fmt.Fprintf(w, "differing events (first %d):\n", len(res.Keys))
		for _, k := range res.Keys {
			who := map[string]string{"only in A": "only in " + ta, "only in B": "only in " + tb}[k.Diff]
			if who == "" {
				who = k.Diff
			}
			fmt.Fprintf(w, "  %-20s source=%s id=%s\n", who, k.Source, k.ID)
		}
	}
}

func runCtlDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return fmt.Errorf("%w: ctl dlq list|replay TARGET", errUsage)
	}
	verb := args[0]
	fs, cfgPath := newFlags("ctl dlq "+verb, "ctl dlq "+verb+" TARGET [--json]", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	all := fs.Bool("all", false, "list every record, also those already replayed")
	names, err := oneTarget(fs, args[1:])
	if err != nil {
		return err
	}
	ops, err := openOps(*cfgPath, names[0])
	if err != nil {
		return err
	}
	defer ops.Close()
	target := names[0]
	encode := func(v any) error {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	if verb == "list" {
		list, err := ops.ListDLQ(ctx, target, *all)
		if err != nil {
			return err
		}
		if *asJSON {
			if list == nil {
				list = []deadletter.Letter{}
			}
			return encode(list)
		}
		printDeadLetters(stdout, list)
		fmt.Fprintf(stdout, "%d dead-lettered events pending for %s\n", len(list), target)
		return nil
	}
	res, err := ops.ReplayDLQ(ctx, target)
	if err != nil {
		return err
	}
	if *asJSON {
		return encode(res)
	}
	fmt.Fprintf(stdout, "%s: %d events applied, %d were already there, %d still failing\n",
		target, res.Applied, res.Duplicates, len(res.StillFailing))
	printDeadLetters(stdout, res.StillFailing)
	return nil
}

func printDeadLetters(w io.Writer, list []deadletter.Letter) {
	if len(list) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ OFFSET\tSOURCE\tID\tFROM\tFAILED AT\tERROR")
	for _, d := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%s\t%s\n", d.DLQOffset, d.Source, d.ID, d.OriginalPartition, d.OriginalOffset, d.FailedAt, oneLine(d.Error))
	}
	tw.Flush()
}
