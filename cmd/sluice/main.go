// Command sluice is the one binary of the sluice pipeline: the ingest
// server, the per-target applier, the migrator, the operator's CLI and a load
// generator. Run `sluice help` for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `sluice — an event-sourced ingestion pipeline: HTTP → Kafka → PostgreSQL targets.

Usage:
  sluice <command> [flags]

Commands:
  ingest    serve POST /v1/events and append each request to Kafka (acks=all)
  apply     apply the event log to one target database (--target NAME)
  migrate   bring a target database to its configured schema version (--target NAME)
  backfill  fill a new target from an old one's ledger, no Kafka history needed (--target NEW --from OLD)
  loadgen   publish N events at a rate, with deliberate duplicates, and report
  ctl       operate the pipeline: status (lag, breakers, blocking sessions)
  healthcheck URL   exit 0 when URL answers 200 (for container health checks)
  version   print the version

Every command takes --config FILE (default $SLUICE_CONFIG, else sluice.yaml).
Run 'sluice <command> --help' for its flags.

Exit codes: 0 success, 1 failure, 2 bad usage or configuration.
`

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	commands := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"ingest":      runIngest,
		"apply":       runApply,
		"migrate":     runMigrate,
		"backfill":    runBackfill,
		"loadgen":     runLoadgen,
		"healthcheck": runHealthcheck,
		"ctl":         runCtl,
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "version", "--version":
		fmt.Fprintln(stdout, "sluice", version)
		return 0
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", name, usage)
		return 2
	}
	err := cmd(ctx, rest, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage), errors.Is(err, errConfig):
		fmt.Fprintf(stderr, "sluice %s: %v\n", name, err)
		return 2
	default:
		fmt.Fprintf(stderr, "sluice %s: %v\n", name, err)
		return 1
	}
}

// errUsage marks a bad command line.
var errUsage = errors.New("usage")

// newFlags returns a FlagSet whose errors are returned, not printed-and-exited,
// with the --config flag every command shares.
func newFlags(name, synopsis string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sluice %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	def := os.Getenv("SLUICE_CONFIG")
	if def == "" {
		def = "sluice.yaml"
	}
	cfg := fs.String("config", def, "configuration file (env SLUICE_CONFIG)")
	return fs, cfg
}

// parseInterspersed parses flags wherever they stand among the positional
// arguments (`ctl status b --json` as well as `ctl status --json b`) and
// returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// oneTarget parses flags among args and returns the positional arguments,
// which must name exactly one target.
func oneTarget(fs *flag.FlagSet, args []string) ([]string, error) {
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	if len(names) != 1 {
		fs.Usage()
		return nil, fmt.Errorf("%w: name one target", errUsage)
	}
	return names, nil
}
