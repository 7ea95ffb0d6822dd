package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/consumer"
)

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
	addr := firstNonEmpty(*listen, t.Listen, "127.0.0.1:0")
	log := newLogger(cfg.Log, stderr).With("component", "apply")
	reg := newRegistry()

	maxConns := cfg.Apply.MaxConns
	if t.MaxConns != 0 {
		maxConns = t.MaxConns
	}
	applier, err := consumer.New(consumer.Config{
		Target:                   t.Name,
		Brokers:                  cfg.Kafka.Brokers,
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
		Logger:                   log,
		Registerer:               reg,
	})
	if err != nil {
		if errors.Is(err, consumer.ErrInvalidConfig) {
			return fmt.Errorf("%w: %v", errConfig, err)
		}
		return err
	}

	ready := func(ctx context.Context) error {
		if err := applier.Ping(ctx); err != nil {
			return fmt.Errorf("target %s: %w", t.Name, err)
		}
		return probeKafka(ctx, cfg.Kafka.Brokers)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	log.Info("apply ops listening", "addr", ln.Addr().String(), "target", t.Name)
	srv := &http.Server{Handler: opsMux(reg, ready), ReadHeaderTimeout: 10 * time.Second}

	// Shutdown order: ctx ends → the applier stops fetching, finishes its
	// in-flight batches, leaves the group and closes its pool; then the ops
	// server (kept up until then so the last metrics can be scraped).
	g, gctx := errgroup.WithContext(ctx)
	applierDone := make(chan struct{})
	g.Go(func() error {
		defer close(applierDone)
		specs := []topicSpec{eventsTopic(cfg), controlTopic(), dlqTopic(t.Name)}
		if err := ensureTopicsRetrying(gctx, log, cfg.Kafka.Brokers, cfg.Kafka.ReplicationFactor, specs); err != nil {
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
	err = g.Wait()
	log.Info("applier stopped", "target", t.Name)
	return err
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
