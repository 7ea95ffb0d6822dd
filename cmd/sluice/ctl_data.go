package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/consumer"
)

// errDiffer is returned by ctl verify when the targets differ (exit 1).
var errDiffer = errors.New("targets differ")

func runCtlVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("ctl verify", "ctl verify TARGET TARGET [--from TIME] [--to TIME] [--bucket D] [--json]", stderr)
	from := fs.String("from", "", "compare events whose time is at or after this (RFC 3339; default: all)")
	to := fs.String("to", "", "compare events whose time is before this (RFC 3339; default: all)")
	bucket := fs.Duration("bucket", time.Minute, "width of a compared time bucket")
	asJSON := fs.Bool("json", false, "print JSON")
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(names) != 2 {
		fs.Usage()
		return fmt.Errorf("%w: name two targets", errUsage)
	}
	cfg, err := loadConfig(*cfgPath, os.Getenv)
	if err != nil {
		return err
	}
	ta, err := cfg.target(names[0])
	if err != nil {
		return err
	}
	tb, err := cfg.target(names[1])
	if err != nil {
		return err
	}
	vc := consumer.VerifyConfig{A: ta.Name, B: tb.Name, DSNA: ta.DSN, DSNB: tb.DSN, Bucket: *bucket}
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
	res, err := consumer.Verify(ctx, vc)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if res.FirstDiff == nil {
		fmt.Fprintf(stdout, "%s and %s agree: %d events in %d buckets of %v\n", ta.Name, tb.Name, res.Events, len(res.Buckets), *bucket)
	} else {
		d := res.FirstDiff
		where := "the events without a time"
		if !d.Start.IsZero() {
			where = fmt.Sprintf("[%s, %s)", d.Start.Format(time.RFC3339), d.Start.Add(*bucket).Format(time.RFC3339))
		}
		fmt.Fprintf(stdout, "%s and %s differ; first in %s: %s has %d events (checksum %s), %s has %d (checksum %s)\n",
			ta.Name, tb.Name, where, ta.Name, d.CountA, d.SumA, tb.Name, d.CountB, d.SumB)
	}
	if res.FirstDiff != nil {
		return errDiffer
	}
	return nil
}

func runCtlDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return fmt.Errorf("%w: ctl dlq list|replay TARGET", errUsage)
	}
	verb := args[0]
	fs, cfgPath := newFlags("ctl dlq "+verb, "ctl dlq "+verb+" TARGET [--json]", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	all := fs.Bool("all", false, "list every record, also those already replayed")
	names, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if len(names) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: name one target", errUsage)
	}
	cfg, err := loadConfig(*cfgPath, os.Getenv)
	if err != nil {
		return err
	}
	t, err := cfg.target(names[0])
	if err != nil {
		return err
	}
	dc := consumer.DLQConfig{Target: t.Name, Brokers: cfg.Kafka.Brokers, DSN: t.DSN, All: *all}
	encode := func(v any) error {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	if verb == "list" {
		list, err := consumer.ListDLQ(ctx, dc)
		if err != nil {
			return err
		}
		if *asJSON {
			if list == nil {
				list = []consumer.DeadLetter{}
			}
			return encode(list)
		}
		printDeadLetters(stdout, list)
		fmt.Fprintf(stdout, "%d dead-lettered events pending for %s\n", len(list), t.Name)
		return nil
	}
	res, err := consumer.ReplayDLQ(ctx, dc)
	if err != nil {
		return err
	}
	if *asJSON {
		return encode(res)
	}
	fmt.Fprintf(stdout, "%s: %d events applied, %d were already there, %d still failing\n",
		t.Name, res.Applied, res.Duplicates, len(res.StillFailing))
	printDeadLetters(stdout, res.StillFailing)
	return nil
}

func printDeadLetters(w io.Writer, list []consumer.DeadLetter) {
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
