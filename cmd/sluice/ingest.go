package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/admin"
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

	writer, err := producer.NewWriter(producer.WriterConfig{
		Brokers:     cfg.Kafka.Brokers,
		Topic:       cfg.Kafka.Topic,
		Linger:      time.Duration(cfg.Ingest.Linger),
		Logger:      kafkaLogFunc(log.Debug),
		ErrorLogger: kafkaLogFunc(log.Warn),
	})
	if err != nil {
		return fmt.Errorf("%w: %v", errConfig, err)
	}
	handler, err := producer.NewHandler(producer.Config{
		Keys:         cfg.Ingest.Keys,
		MaxBodyBytes: cfg.Ingest.MaxBodyBytes,
		MaxEvents:    cfg.Ingest.MaxEvents,
		WriteTimeout: time.Duration(cfg.Ingest.WriteTimeout),
		RatePerKey:   cfg.Ingest.RatePerKey,
	}, writer, producer.NewMetrics(reg), log)
	if err != nil {
		if errors.Is(err, producer.ErrInvalidConfig) {
			return fmt.Errorf("%w: %v", errConfig, err)
		}
		return err
	}

	// Topics are made in the background: a broker that is down at start
	// means 503s and a failing /readyz, not a process that will not start.
	var topicsReady atomic.Bool
	topicsDone := make(chan struct{})
	go func() {
		defer close(topicsDone)
		if ensureTopicsRetrying(ctx, log, cfg.Kafka.Brokers, cfg.Kafka.ReplicationFactor, []topicSpec{eventsTopic(cfg), controlTopic()}) == nil {
			topicsReady.Store(true)
			log.Info("kafka topic ready", "topic", cfg.Kafka.Topic)
		}
	}()
	ready := func(ctx context.Context) error {
		if !topicsReady.Load() {
			return errors.New("kafka topic not created yet")
		}
		return probeKafka(ctx, cfg.Kafka.Brokers)
	}
	mux := opsMux(reg, ready)
	mux.Handle("POST /v1/events", handler)
	if cfg.Ingest.AdminToken != "" {
		adm, err := admin.NewHandler(admin.Config{Brokers: cfg.Kafka.Brokers, Topic: cfg.Kafka.Topic,
			Targets: cfg.adminTargets(), Token: cfg.Ingest.AdminToken, IngestKeys: cfg.Ingest.Keys, Logger: log})
		if err != nil {
			return fmt.Errorf("%w: %v", errConfig, err)
		}
		defer adm.Close()
		mux.Handle("/v1/admin/", adm)
		mux.Handle("/ui/", adm)
		mux.Handle("/ui", adm)
	} else {
		off := func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "the admin API and /ui are off: set ingest.admin_token (or SLUICE_ADMIN_TOKEN)", http.StatusNotFound)
		}
		mux.HandleFunc("/v1/admin/", off)
		mux.HandleFunc("/ui/", off)
		mux.HandleFunc("/ui", off)
		log.Info("admin API and /ui are off: no ingest.admin_token")
	}

	ln, err := net.Listen("tcp", cfg.Ingest.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Ingest.Listen, err)
	}
	log.Info("ingest listening", "addr", ln.Addr().String(), "topic", cfg.Kafka.Topic, "brokers", cfg.Kafka.Brokers)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second}

	// Shutdown order: stop accepting and let in-flight requests get their
	// Kafka acknowledgement (serve), then flush and close the writer.
	serveErr := serve(ctx, log, srv, ln, 30*time.Second)
	<-topicsDone
	if err := writer.Close(); err != nil {
		log.Warn("closing kafka writer", "err", err)
	}
	log.Info("ingest stopped")
	return serveErr
}

func kafkaLogFunc(logf func(string, ...any)) kafka.Logger {
	return kafka.LoggerFunc(func(msg string, args ...any) {
		logf(fmt.Sprintf(msg, args...), "component", "kafka-go")
	})
}
