package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sluicehq/sluice/internal/targetdb"
)

func runBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("backfill", "backfill --target NEW --from OLD [--rate N] [--chunk N]", stderr)
	to := fs.String("target", "", "the new target to fill (migrated, its applier stopped or not yet started)")
	from := fs.String("from", "", "the target whose ledger to copy")
	rate := fs.Float64("rate", 0, "most events read from the old target per second (0: unbounded), so its own applying does not slow")
	chunk := fs.Int("chunk", 2000, "events per transaction on the new target")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *to == "" || *from == "" || *to == *from {
		fs.Usage()
		return fmt.Errorf("%w: give --target and --from, two different targets", errUsage)
	}
	ops, err := openOps(*cfgPath, *to, *from)
	if err != nil {
		return err
	}
	defer ops.Close()
	fmt.Fprintf(stderr, "backfilling %s from %s's ledger (one snapshot); %s's applier and ingest are not touched\n", *to, *from, *from)
	res, err := ops.Backfill(ctx, *to, *from, targetdb.BackfillOptions{Rate: *rate, Chunk: *chunk,
		Progress: func(p targetdb.BackfillProgress) {
			eta := "?"
			if p.Done > 0 {
				eta = (time.Duration(float64(p.Elapsed) * float64(max(p.Total-p.Done, 0)) / float64(p.Done))).Round(time.Second).String()
			}
			fmt.Fprintf(stderr, "\r  %d of %d events (%.0f%%), %v elapsed, about %s to go   ", p.Done, p.Total,
				100*float64(p.Done)/float64(max(p.Total, 1)), p.Elapsed.Round(time.Second), eta)
		},
		Retrying: func(err error, attempt int) {
			fmt.Fprintf(stderr, "\n  waiting (attempt %d), a target does not answer yet: %s\n", attempt+1, oneLine(err.Error()))
		}})
	fmt.Fprintln(stderr)
	if err != nil {
		return fmt.Errorf("%w (run it again: it resumes where it stopped)", err)
	}
	fmt.Fprintf(stdout, "target %s: %d events copied from %s, %d of them new; its applier continues from %s's offsets at the snapshot: %v\n",
		*to, res.Copied, *from, res.New, *from, res.Offsets)
	if res.DeadLettered > 0 {
		fmt.Fprintf(stdout, "%d events of %s's ledger refused by %s's schema went to %s's DLQ (sluice ctl dlq list %s)\n",
			res.DeadLettered, *from, *to, *to, *to)
	}
	fmt.Fprintf(stdout, "%s's dead letters: %d applied to %s, %d refused by it too\n", *from, res.FromDLQ, *to, len(res.Refused))
	printDeadLetters(stdout, res.Refused)
	return nil
}
