package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/consumer"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
)

// applyGCPercent is the applier's GOGC when the environment sets none. Its
// live heap is small, a few batches, and it allocates for every event it
// decodes: collecting when the heap has grown by 4× its live size rather
// than 1× cut its CPU by a fifth draining a backlog (BenchmarkDrain, same
// run) for a peak heap still far under the memory target. GOGC and
// GOMEMLIMIT in the environment win.
const applyGCPercent = 400

func runApply(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs, cfgPath := newFlags("apply", "apply --target NAME [--config FILE] [--listen ADDR]", stderr)
	name := fs.String("target", "", "the target to apply to, as named in the configuration (required)")
	listen := fs.String("listen", "", "address of /healthz, /readyz and /metrics (default: the target's listen, else 127.0.0.1:0)")
	logFormat := fs.String("log-format", "", "text or json (default: log.format, else text)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *name == "" {
		fs.Usage()
		return fmt.Errorf("%w: --target is required", errUsage)
	}
	cfg, err := loadConfig(*cfgPath, os.Getenv)
	if err != nil {
		return err
	}
	if err := cfg.setLogFormat(*logFormat); err != nil {
		return err
	}
	t, err := cfg.target(*name)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr).With("component", "apply")
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(applyGCPercent)
	}
	stopTracing, err := cfg.startTracing(ctx, "sluice-apply-"+t.Name, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	reg := newRegistry()
	cluster := cfg.cluster(log)
	defer cluster.Close()
	projections, err := cfg.projections(t)
	if err != nil {
		return err
	}
	ac := applierConfig(cfg, t, cluster, log, reg)
	ac.Projections = projections
	applier, err := consumer.New(ac)
	if err != nil {
		if errors.Is(err, consumer.ErrInvalidConfig) {
			return fmt.Errorf("%w: targets[%s]: %v", errConfig, t.Name, err)
		}
		return err
	}
	addr := firstNonEmpty(*listen, t.Listen, "127.0.0.1:0")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	log.Info("apply ops listening", "addr", ln.Addr().String(), "target", t.Name)
	ready := func(ctx context.Context) error {
		if err := applier.Ping(ctx); err != nil {
			return fmt.Errorf("target %s: %w", t.Name, err)
		}
		return cluster.Probe(ctx)
	}
	specs := []kafkaadmin.TopicSpec{cfg.eventsTopic(), kafkaadmin.ControlTopicSpec(), kafkaadmin.StatusTopicSpec(), kafkaadmin.DLQTopicSpec(t.Name)}
	err = runApplier(ctx, log, applier, cluster, cfg.Kafka.ReplicationFactor, specs,
		&http.Server{Handler: jsonErrors(opsMux(reg, ready)), ReadHeaderTimeout: 10 * time.Second}, ln)
	if errors.Is(err, consumer.ErrRetired) {
		fmt.Fprintf(stderr, "sluice apply: target %s is retired (sluice ctl retire): nothing to do; remove it from the configuration\n", t.Name)
		return nil
	}
	log.Info("applier stopped", "target", t.Name)
	return err
}

// applierConfig maps the configuration of target t to the applier's.
func applierConfig(cfg *config, t targetConfig, cluster *kafkaadmin.Cluster, log *slog.Logger, reg prometheus.Registerer) consumer.Config {
	maxConns := cfg.Apply.MaxConns
	if t.MaxConns != 0 {
		maxConns = t.MaxConns
	}
	return consumer.Config{
		Target:                   t.Name,
		Cluster:                  cluster,
		Topic:                    cfg.Kafka.Topic,
		DSN:                      t.DSN,
		SchemaVersion:            t.SchemaVersion,
		MaxConns:                 maxConns,
		BatchSize:                cfg.Apply.BatchSize,
		Linger:                   time.Duration(cfg.Apply.Linger),
		LockTimeout:              time.Duration(cfg.Apply.LockTimeout),
		StatementTimeout:         time.Duration(cfg.Apply.StatementTimeout),
		IdleInTransactionTimeout: time.Duration(cfg.Apply.IdleInTransactionTimeout),
		ApplyTimeout:             time.Duration(cfg.Apply.ApplyTimeout),
		RetryMax:                 time.Duration(cfg.Apply.RetryMax),
		TripAfter:                cfg.Apply.TripAfter,
		BreakerMinOpen:           time.Duration(cfg.Apply.BreakerMinOpen),
		BreakerMaxOpen:           time.Duration(cfg.Apply.BreakerMaxOpen),
		Blockers:                 cfg.blockerPolicy(t),
		Logger:                   log,
		Registerer:               reg,
	}
}

// runApplier creates the topics (waiting for Kafka), runs the applier and
// serves /metrics beside it until ctx ends.
//
// Shutdown order: ctx ends → the applier stops fetching, finishes its
// in-flight batches, leaves the group and closes its pool; then the ops
// server (kept up until then so the last metrics can be scraped).
func runApplier(ctx context.Context, log *slog.Logger, applier *consumer.Applier, cluster *kafkaadmin.Cluster,
	replication int, specs []kafkaadmin.TopicSpec, srv *http.Server, ln net.Listener) error {
	g, gctx := errgroup.WithContext(ctx)
	applierDone := make(chan struct{})
	g.Go(func() error {
		defer close(applierDone)
		if err := cluster.EnsureTopicsRetrying(gctx, replication, specs...); err != nil {
			if errors.Is(err, kafkaadmin.ErrPartitionCount) {
				return err
			}
			return nil // stopped before Kafka came up
		}
		return applier.Run(gctx)
	})
	g.Go(func() error {
		sctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { <-applierDone; cancel() }()
		return serve(sctx, log, srv, ln, 5*time.Second)
	})
	return g.Wait()
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
