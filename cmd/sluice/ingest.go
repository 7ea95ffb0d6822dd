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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/producer"
)

func runIngest(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs, cfgPath := newFlags("ingest", "ingest [--config FILE] [--listen ADDR]", stderr)
	listen := fs.String("listen", "", "address to serve the API, /healthz, /readyz and /metrics on (default: ingest.listen)")
	logFormat := fs.String("log-format", "", "text or json (default: log.format, else text)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, os.Getenv)
	if err != nil {
		return err
	}
	if err := cfg.setLogFormat(*logFormat); err != nil {
		return err
	}
	if *listen != "" {
		cfg.Ingest.Listen = *listen
	}
	log := newLogger(cfg.Log, stderr).With("component", "ingest")
	reg := newRegistry()
	cluster := cfg.cluster(log)
	defer cluster.Close()

	writer := cluster.NewWriter(kafkaadmin.WriterConfig{Topic: cfg.Kafka.Topic, Linger: time.Duration(cfg.Ingest.Linger)})
	handler, err := newIngestHandler(cfg, writer, reg, log)
	if err != nil {
		return err
	}
	// Topics are made in the background: a broker that is down at start
	// means 503s and a failing /readyz, not a process that will not start.
	var topicsReady atomic.Bool
	topicsDone := make(chan struct{})
	go func() {
		defer close(topicsDone)
		specs := []kafkaadmin.TopicSpec{cfg.eventsTopic(), kafkaadmin.ControlTopicSpec(), kafkaadmin.StatusTopicSpec()}
		if err := cluster.EnsureTopicsRetrying(ctx, cfg.Kafka.ReplicationFactor, specs...); err == nil {
			topicsReady.Store(true)
			log.Info("kafka topics ready", "topic", cfg.Kafka.Topic)
		} else if ctx.Err() == nil {
			log.Error("kafka topics cannot be used", "err", err)
		}
	}()
	var draining atomic.Bool
	ready := func(ctx context.Context) error {
		switch {
		case draining.Load():
			return errors.New("draining: shutting down")
		case !topicsReady.Load():
			return errors.New("kafka topic not created yet")
		}
		return cluster.Probe(ctx)
	}
	mux := opsMux(reg, ready)
	mux.Handle("POST /v1/events", handler)
	closeAdmin, err := mountAdmin(mux, cfg, cluster, log)
	if err != nil {
		return err
	}
	defer closeAdmin()

	ln, err := net.Listen("tcp", cfg.Ingest.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Ingest.Listen, err)
	}
	log.Info("ingest listening", "addr", ln.Addr().String(), "topic", cfg.Kafka.Topic, "brokers", cfg.Kafka.Brokers)
	srv := &http.Server{Handler: jsonErrors(mux), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
		// A request may wait WriteTimeout for Kafka's acknowledgement, then answer.
		WriteTimeout: time.Duration(cfg.Ingest.WriteTimeout) + 10*time.Second, MaxHeaderBytes: 64 << 10}

	// Shutdown order: /readyz fails first and the listener stays open for
	// drain_delay, so that a load balancer stops sending requests before
	// connections are refused; then accepting stops and in-flight requests
	// get their Kafka acknowledgement (serve); then the writer flushes and
	// closes.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	go func() {
		<-ctx.Done()
		draining.Store(true)
		log.Info("draining: /readyz answers 503; the listener closes after the drain delay", "drain_delay", time.Duration(cfg.Ingest.DrainDelay))
		time.Sleep(time.Duration(cfg.Ingest.DrainDelay))
		stopServing()
	}()
	serveErr := serve(serveCtx, log, srv, ln, 30*time.Second)
	<-topicsDone
	if err := writer.Close(); err != nil {
		log.Warn("closing kafka writer", "err", err)
	}
	log.Info("ingest stopped")
	return serveErr
}

// newIngestHandler is POST /v1/events, appending through writer.
func newIngestHandler(cfg *config, writer *kafka.Writer, reg prometheus.Registerer, log *slog.Logger) (http.Handler, error) {
	handler, err := producer.NewHandler(producer.Config{
		Keys:         cfg.Ingest.Keys,
		MaxBodyBytes: cfg.Ingest.MaxBodyBytes,
		MaxEvents:    cfg.Ingest.MaxEvents,
		WriteTimeout: time.Duration(cfg.Ingest.WriteTimeout),
		RatePerKey:   cfg.Ingest.RatePerKey,
		MaxInFlight:  cfg.Ingest.MaxInFlight,
	}, writer, producer.NewMetrics(reg), log)
	if errors.Is(err, producer.ErrInvalidConfig) {
		return nil, fmt.Errorf("%w: %v", errConfig, err)
	}
	return handler, err
}

// mountAdmin serves the admin API and /ui on mux when an admin token is
// configured, and a 404 that says how to turn them on otherwise. The
// returned function releases what it holds.
func mountAdmin(mux *http.ServeMux, cfg *config, cluster *kafkaadmin.Cluster, log *slog.Logger) (func(), error) {
	if cfg.Ingest.AdminToken == "" {
		off := func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusNotFound, "the admin API and /ui are off: set ingest.admin_token (or SLUICE_ADMIN_TOKEN)")
		}
		for _, p := range []string{"/v1/admin/", "/ui/", "/ui"} {
			mux.HandleFunc(p, off)
		}
		log.Info("admin API and /ui are off: no ingest.admin_token")
		return func() {}, nil
	}
	ops, err := cfg.operations(cluster)
	if err != nil {
		return nil, err
	}
	adm, err := admin.NewHandler(admin.Config{Ops: ops, Token: cfg.Ingest.AdminToken, IngestKeys: cfg.Ingest.Keys, Logger: log})
	if err != nil {
		ops.Close()
		return nil, fmt.Errorf("%w: ingest.admin_token: %v", errConfig, err)
	}
	for _, p := range []string{"/v1/admin/", "/ui/", "/ui"} {
		mux.Handle(p, adm)
	}
	return func() { ops.Close() }, nil
}
