package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/docs"
	"github.com/sluicehq/sluice/internal/jsonerror"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/producer"
)

// readyProbeEvery is how often ingest probes its brokers for /readyz, and
// readyProbeTimeout bounds one probe.
const (
	readyProbeEvery   = 5 * time.Second
	readyProbeTimeout = 2 * time.Second
)

func runIngest(ctx context.Context, args []string, _, stderr io.Writer) error {
	// SIGHUP reloads the keys. It is caught from the first moment, before
	// the configuration is read, until runIngest returns, drain included:
	// its default action ends the process, and with it the requests still
	// waiting for Kafka's acknowledgement. One that comes before the keys
	// are served is a reload once they are.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	fs, cfgPath := newFlags("ingest", "ingest [--config FILE] [--listen ADDR] [--admin-listen ADDR]", stderr)
	listen := fs.String("listen", "", "public address: POST /v1/events, /healthz, /readyz (default: ingest.listen)")
	adminListen := fs.String("admin-listen", "", "private address: the admin API, /ui, /metrics, /healthz, /readyz (default: ingest.admin_listen)")
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
	if *adminListen != "" {
		cfg.Ingest.AdminListen = *adminListen
	}
	if cfg.Ingest.Listen == cfg.Ingest.AdminListen {
		return fmt.Errorf("%w: ingest.admin_listen (%s) must differ from ingest.listen: the admin API and /metrics stay off the public port", errConfig, cfg.Ingest.Listen)
	}
	log := newLogger(cfg.Log, stderr).With("component", "ingest")
	stopTracing, err := cfg.startTracing(ctx, "sluice-ingest", log)
	if err != nil {
		return err
	}
	defer stopTracing()
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
	// /readyz reads what a goroutine of this run probes: asking it, on the
	// public port too, never dials a broker.
	kafkaReady := newReadiness(cluster.Probe, readyProbeTimeout, log)
	probeCtx, stopProbing := context.WithCancel(ctx)
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		kafkaReady.run(probeCtx, readyProbeEvery)
	}()
	defer func() {
		stopProbing()
		<-probeDone
	}()
	var draining atomic.Bool
	ready := func(context.Context) error {
		switch {
		case draining.Load():
			return errors.New("draining: shutting down")
		case !topicsReady.Load():
			return errors.New("kafka topic not created yet")
		}
		return kafkaReady.err()
	}
	// Two listeners: what publishers reach, and what operators and
	// Prometheus reach. Nothing of the second is on the first.
	public := probeMux(ready)
	public.Handle("POST /v1/events", handler)
	public.Handle("GET /openapi.yaml", docs.PublicHandler()) // the public listener's part of the contract only
	private := opsMux(reg, ready)
	private.Handle("GET /openapi.yaml", docs.Handler())
	closeAdmin, err := mountAdmin(private, cfg, cluster, handler.HoldsKey, log)
	if err != nil {
		return err
	}
	defer closeAdmin()
	reloadCtx, stopReloading := context.WithCancel(context.WithoutCancel(ctx))
	reloadDone := make(chan struct{})
	go func() {
		defer close(reloadDone)
		reloadKeysOnHangup(reloadCtx, hup, *cfgPath, cfg.Ingest.AdminToken, handler, newReloadMetric(reg), log)
	}()
	defer func() {
		stopReloading()
		<-reloadDone
	}()

	ln, err := net.Listen("tcp", cfg.Ingest.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Ingest.Listen, err)
	}
	if cfg.Ingest.tls != nil {
		ln = tls.NewListener(ln, cfg.Ingest.tls)
	}
	adminLn, err := net.Listen("tcp", cfg.Ingest.AdminListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen on %s (ingest.admin_listen): %w", cfg.Ingest.AdminListen, err)
	}
	log.Info("ingest listening", "addr", ln.Addr().String(), "tls", cfg.Ingest.tls != nil, "admin_addr", adminLn.Addr().String(),
		"topic", cfg.Kafka.Topic, "brokers", cfg.Kafka.Brokers)
	// The write deadline runs from the request's headers: it must outlast a
	// body that takes the whole read timeout, so that the 408 saying so can
	// still be written, and the wait for Kafka's acknowledgement after it.
	const bodyTimeout = 30 * time.Second
	srv := &http.Server{Handler: jsonErrors(public), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: bodyTimeout,
		WriteTimeout: bodyTimeout + time.Duration(cfg.Ingest.WriteTimeout) + 10*time.Second, MaxHeaderBytes: 64 << 10}
	adminSrv := &http.Server{Handler: jsonErrors(private), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
		WriteTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}

	// Shutdown order: /readyz fails first and the listener stays open for
	// drain_delay, so that a load balancer stops sending requests before
	// connections are refused; then accepting stops and in-flight requests
	// get their Kafka acknowledgement (serve); then the writer flushes and
	// closes.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	drained := make(chan struct{})
	defer func() { <-drained }() // the drain below is owned: it ends before runIngest returns
	go func() {
		defer close(drained)
		select {
		case <-ctx.Done():
		case <-serveCtx.Done(): // the server failed: nothing to drain
			return
		}
		draining.Store(true)
		log.Info("draining: /readyz answers 503; the listener closes after the drain delay", "drain_delay", time.Duration(cfg.Ingest.DrainDelay))
		select {
		case <-time.After(time.Duration(cfg.Ingest.DrainDelay)):
		case <-serveCtx.Done():
		}
		stopServing()
	}()
	adminErr := make(chan error, 1)
	go func() { adminErr <- serve(serveCtx, log, adminSrv, adminLn, 5*time.Second) }()
	serveErr := serve(serveCtx, log, srv, ln, 30*time.Second)
	stopServing() // the public server failing stops the admin one too
	serveErr = errors.Join(serveErr, <-adminErr)
	<-topicsDone
	if err := writer.Close(); err != nil {
		log.Warn("closing kafka writer", "err", err)
	}
	log.Info("ingest stopped")
	return serveErr
}

// newIngestHandler is POST /v1/events, appending through writer.
func newIngestHandler(cfg *config, writer *kafka.Writer, reg prometheus.Registerer, log *slog.Logger) (*producer.Handler, error) {
	handler, err := producer.NewHandler(producer.Config{
		Keys:              cfg.ingestKeys(),
		MaxBodyBytes:      cfg.Ingest.MaxBodyBytes,
		MaxEvents:         cfg.Ingest.MaxEvents,
		WriteTimeout:      time.Duration(cfg.Ingest.WriteTimeout),
		RatePerKey:        cfg.Ingest.RatePerKey,
		MaxInFlight:       cfg.Ingest.MaxInFlight,
		Tracing:           cfg.Tracing.Endpoint != "",
		MaxInFlightPerKey: cfg.Ingest.MaxInFlightPerKey,
	}, writer, producer.NewMetrics(reg), log)
	if errors.Is(err, producer.ErrInvalidConfig) {
		return nil, fmt.Errorf("%w: %v", errConfig, err)
	}
	if err != nil {
		return nil, err
	}
	log.Info("ingest keys", "names", handler.KeyNames())
	return handler, nil
}

func newReloadMetric(reg prometheus.Registerer) *prometheus.CounterVec {
	m := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_ingest_key_reloads_total",
		Help: "Reloads of the ingest keys on SIGHUP, by result (ok, error: the previous keys stay).",
	}, []string{"result"})
	m.WithLabelValues("ok")
	m.WithLabelValues("error")
	reg.MustRegister(m)
	return m
}

// reloadKeysOnHangup replaces the ingest keys with those of the
// configuration file (and SLUICE_INGEST_KEYS) at every signal on hup, until
// ctx ends. Requests keep being served throughout; a file that does not
// load, or keys that are not valid, change nothing and say why.
func reloadKeysOnHangup(ctx context.Context, hup <-chan os.Signal, path, adminToken string, handler *producer.Handler, reloads *prometheus.CounterVec, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if err := reloadKeys(path, adminToken, handler); err != nil {
			reloads.WithLabelValues("error").Inc()
			log.Error("ingest keys not reloaded; the previous keys stay", "err", err)
			continue
		}
		reloads.WithLabelValues("ok").Inc()
		log.Info("ingest keys reloaded", "names", handler.KeyNames())
	}
}

func reloadKeys(path, adminToken string, handler *producer.Handler) error {
	cfg, err := loadConfig(path, os.Getenv)
	if err != nil {
		return err
	}
	keys := cfg.ingestKeys()
	if adminToken != "" && producer.KeysHold(keys, adminToken) {
		return fmt.Errorf("%w: ingest.keys: one of them is the admin token", errConfig)
	}
	return handler.SetKeys(keys)
}

// mountAdmin serves the admin API and /ui on mux when an admin token is
// configured, and a 404 that says how to turn them on otherwise. The
// returned function releases what it holds.
func mountAdmin(mux *http.ServeMux, cfg *config, cluster *kafkaadmin.Cluster, isIngestKey func(string) bool, log *slog.Logger) (func(), error) {
	if cfg.Ingest.AdminToken == "" {
		off := func(w http.ResponseWriter, _ *http.Request) {
			jsonerror.Write(w, http.StatusNotFound, "the admin API and /ui are off: set ingest.admin_token (or SLUICE_ADMIN_TOKEN)")
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
	adm, err := admin.NewHandler(admin.Config{Ops: ops, Token: cfg.Ingest.AdminToken, IsIngestKey: isIngestKey, Logger: log})
	if err != nil {
		ops.Close()
		return nil, fmt.Errorf("%w: ingest.admin_token: %v", errConfig, err)
	}
	for _, p := range []string{"/v1/admin/", "/ui/", "/ui"} {
		mux.Handle(p, adm)
	}
	return func() { ops.Close() }, nil
}

// readiness is ingest's readiness as a goroutine probes it in the
// background: /readyz only reads it, so asking it, however often and
// unauthenticated, never dials a broker, and its answer names none (the
// log does).
type readiness struct {
	probe   func(context.Context) error
	timeout time.Duration
	log     *slog.Logger

	mu   sync.Mutex
	last error // why not ready, for /readyz; nil when the last probe answered
}

// Why /readyz says ingest is not ready, naming no broker.
var (
	errNotProbed = errors.New("kafka not probed yet")
	errNoBroker  = errors.New("no kafka broker answered the last probe")
)

// newReadiness is a readiness that probe will refresh, each probe bounded
// by timeout; not ready until the first probe answers.
func newReadiness(probe func(context.Context) error, timeout time.Duration, log *slog.Logger) *readiness {
	return &readiness{probe: probe, timeout: timeout, log: log, last: errNotProbed}
}

// err is why ingest is not ready, as of the last probe, or nil.
func (r *readiness) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// run probes at once, then every interval, until ctx ends.
func (r *readiness) run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		r.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// refresh probes once and keeps the outcome. The log says when it
// changes, and then the probe's own error, which names the brokers.
func (r *readiness) refresh(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, r.timeout)
	err := r.probe(pctx)
	cancel()
	if ctx.Err() != nil {
		return // stopping: a probe cut short says nothing of the brokers
	}
	r.mu.Lock()
	was := r.last
	r.last = nil
	if err != nil {
		r.last = errNoBroker
	}
	r.mu.Unlock()
	switch {
	case err != nil && was != errNoBroker:
		r.log.Warn("kafka probe failed: /readyz answers 503", "err", err)
	case err == nil && was != nil:
		r.log.Info("kafka probe answered: /readyz answers 200 once the topics exist")
	}
}
