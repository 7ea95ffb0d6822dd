package kafkaadmin

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
)

// Timeouts of the calls this package makes. They are deliberately short:
// an operator or an applier is told that Kafka does not answer, instead of
// waiting on a broker that is gone.
const (
	// DialTimeout bounds connecting to one broker.
	DialTimeout = 5 * time.Second
	// RequestTimeout bounds one admin request (metadata, offsets, configs,
	// fetch of one record) when the caller's context has no earlier deadline.
	RequestTimeout = 10 * time.Second
	// MetadataTTL is how long topic metadata is cached. kafka-go's default
	// (6s, shared by every client of the process) hides a topic that was
	// just created and goes stale across a broker restart.
	MetadataTTL = time.Second
	// FollowWait is the longest a follower's fetch waits for new records: how
	// fast a replica sees an operator's command.
	FollowWait = 200 * time.Millisecond
)

// Config says how to reach the cluster.
type Config struct {
	// Brokers are the bootstrap addresses, host:port. Required.
	Brokers []string
	// ClientID names sluice's connections in the brokers' logs and quotas.
	// Default "sluice".
	ClientID string
	// Logger receives kafka-go's own logs (at debug, errors at warn); nil
	// discards them.
	Logger *slog.Logger
	// TLS, when set, is used for every connection to every broker.
	TLS *tls.Config
	// SASL, when set, authenticates every connection (PLAIN or SCRAM).
	SASL sasl.Mechanism
}

// Cluster is sluice's handle on one Kafka cluster. It owns the transport
// (for clients and writers) and the dialer (for readers and consumer
// groups) that everything built from it shares. Safe for concurrent use;
// Close it when done.
type Cluster struct {
	brokers   []string
	log       *slog.Logger
	transport *kafka.Transport
	dialer    *kafka.Dialer
	client    *kafka.Client
}

// New returns a Cluster for cfg. It connects lazily: a broker that is down
// now is only noticed by the first call that needs it.
func New(cfg Config) *Cluster {
	if cfg.ClientID == "" {
		cfg.ClientID = "sluice"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tr := &kafka.Transport{ClientID: cfg.ClientID, DialTimeout: DialTimeout, MetadataTTL: MetadataTTL, TLS: cfg.TLS, SASL: cfg.SASL}
	c := &Cluster{
		brokers:   append([]string(nil), cfg.Brokers...),
		log:       cfg.Logger,
		transport: tr,
		dialer: &kafka.Dialer{ClientID: cfg.ClientID, Timeout: DialTimeout, DualStack: true,
			TLS: cfg.TLS, SASLMechanism: cfg.SASL},
	}
	c.client = &kafka.Client{Addr: kafka.TCP(c.brokers...), Timeout: RequestTimeout, Transport: tr}
	return c
}

// Brokers returns the bootstrap addresses.
func (c *Cluster) Brokers() []string { return append([]string(nil), c.brokers...) }

// Close closes idle connections of the shared transport. Readers, writers
// and groups built from c are closed by their owners.
func (c *Cluster) Close() { c.transport.CloseIdleConnections() }

// Client returns the admin client on the shared transport.
func (c *Cluster) Client() *kafka.Client { return c.client }

// logger is l, or the cluster's logger when l is nil.
func (c *Cluster) logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return c.log
	}
	return l
}

// Logger bridges kafka-go's printf-style logger to log at level.
func Logger(log *slog.Logger, level slog.Level) kafka.Logger {
	return kafka.LoggerFunc(func(msg string, args ...any) {
		log.Log(context.Background(), level, fmt.Sprintf(msg, args...), "component", "kafka-go")
	})
}

// WriterConfig configures a writer built by NewWriter. The zero value of
// every field but Topic works.
type WriterConfig struct {
	// Topic is where the writer appends. Required.
	Topic string
	// Linger is how long a partial batch waits for more records. kafka-go's
	// default of 1s would delay every synchronous write. Default 2ms.
	Linger time.Duration
	// BatchSize is the most records in one produce request per partition.
	// Default 1000.
	BatchSize int
	// BatchBytes is the most bytes of one produce request; a single record
	// larger than this fails with kafka.MessageTooLargeError. Default 1 MiB.
	BatchBytes int64
	// MaxAttempts is how many times a produce request is tried before the
	// write fails. Default 5.
	MaxAttempts int
	// Logger receives the writer's logs; nil uses the cluster's.
	Logger *slog.Logger
}

// NewWriter returns a synchronous writer that returns only once every
// in-sync replica has the records (kafka-go's zero value would be
// fire-and-forget), keyed with the murmur2 hash of the Java client so that
// any producer keyed the same way lands on the same partition. It never
// creates topics. Safe for concurrent use; concurrent writes are batched.
func (c *Cluster) NewWriter(wc WriterConfig) *kafka.Writer {
	if wc.Linger <= 0 {
		wc.Linger = 2 * time.Millisecond
	}
	if wc.BatchSize <= 0 {
		wc.BatchSize = 1000
	}
	if wc.BatchBytes <= 0 {
		wc.BatchBytes = 1 << 20
	}
	if wc.MaxAttempts <= 0 {
		wc.MaxAttempts = 5
	}
	log := c.logger(wc.Logger)
	return &kafka.Writer{
		Addr:                   kafka.TCP(c.brokers...),
		Topic:                  wc.Topic,
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		Async:                  false,
		BatchTimeout:           wc.Linger,
		BatchSize:              wc.BatchSize,
		BatchBytes:             wc.BatchBytes,
		MaxAttempts:            wc.MaxAttempts,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		AllowAutoTopicCreation: false,
		Transport:              c.transport,
		Logger:                 Logger(log, slog.LevelDebug),
		ErrorLogger:            Logger(log, slog.LevelWarn),
	}
}

// ReaderConfig configures a reader of one partition, built by NewReader.
type ReaderConfig struct {
	Topic     string
	Partition int
	// MaxBytes bounds one fetch. Default 1 MiB.
	MaxBytes int
	// MaxWait is the longest a fetch waits for records. Default 500ms.
	MaxWait time.Duration
	// QueueCapacity is how many records the reader prefetches. Default 100.
	QueueCapacity int
	// Logger receives the reader's logs; nil uses the cluster's.
	Logger *slog.Logger
}

// NewReader returns a reader of one partition, without a group: its owner
// seeks it (SetOffset) and commits nowhere. Not safe for concurrent use.
func (c *Cluster) NewReader(rc ReaderConfig) *kafka.Reader {
	if rc.MaxBytes <= 0 {
		rc.MaxBytes = 1 << 20
	}
	if rc.MaxWait <= 0 {
		rc.MaxWait = 500 * time.Millisecond
	}
	log := c.logger(rc.Logger)
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:       c.brokers,
		Dialer:        c.dialer,
		Topic:         rc.Topic,
		Partition:     rc.Partition,
		MinBytes:      1,
		MaxBytes:      rc.MaxBytes,
		MaxWait:       rc.MaxWait,
		QueueCapacity: rc.QueueCapacity,
		Logger:        Logger(log, slog.LevelDebug),
		ErrorLogger:   Logger(log, slog.LevelWarn),
	})
}

// GroupConfig configures a consumer group built by NewConsumerGroup.
type GroupConfig struct {
	ID     string
	Topics []string
	// SessionTimeout is how long the group waits for a vanished member
	// before moving its partitions; the rebalance timeout is the same and
	// heartbeats go every tenth of it. Default 10s.
	SessionTimeout time.Duration
	Logger         *slog.Logger
}

// NewConsumerGroup joins group gc.ID lazily (on the first Next). Members
// that never committed start at the first offset: a new target backfills
// from the start of the log.
func (c *Cluster) NewConsumerGroup(gc GroupConfig) (*kafka.ConsumerGroup, error) {
	if gc.SessionTimeout <= 0 {
		gc.SessionTimeout = 10 * time.Second
	}
	log := c.logger(gc.Logger)
	return kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                gc.ID,
		Brokers:           c.brokers,
		Dialer:            c.dialer,
		Topics:            gc.Topics,
		StartOffset:       kafka.FirstOffset,
		SessionTimeout:    gc.SessionTimeout,
		RebalanceTimeout:  gc.SessionTimeout,
		HeartbeatInterval: gc.SessionTimeout / 10,
		JoinGroupBackoff:  time.Second,
		Logger:            Logger(log, slog.LevelDebug),
		ErrorLogger:       Logger(log, slog.LevelWarn),
	})
}

// Probe makes a real round trip to a broker (ApiVersions). Metadata would not
// do: it is served from a cache and says nothing about whether a broker
// answers now.
func (c *Cluster) Probe(ctx context.Context) error {
	var last error
	for _, addr := range c.brokers {
		conn, err := c.dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			last = err
			continue
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
		}
		_, err = conn.ApiVersions()
		conn.Close()
		if err == nil {
			return nil
		}
		last = err
	}
	return fmt.Errorf("no broker answers: %w", last)
}
