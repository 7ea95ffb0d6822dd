package producer

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Appender appends records to the events topic and returns once every one of
// them is acknowledged, or with an error. *kafka.Writer is one.
type Appender interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// WriterConfig configures the Kafka writer of the ingest path. The zero value
// of every field but Brokers and Topic works.
type WriterConfig struct {
	// Brokers are the bootstrap addresses, host:port. Required.
	Brokers []string
	// Topic is the events topic. Required.
	Topic string
	// Linger is how long a partial batch waits for more records before it
	// is sent. kafka-go's default of 1s would delay every synchronous
	// request by up to a second. Default 2ms.
	Linger time.Duration
	// BatchSize is the most records in one produce request per partition.
	// Default 1000.
	BatchSize int
	// BatchBytes is the most bytes in one produce request. It must be at
	// least the largest single event the handler accepts, and at most the
	// broker's message.max.bytes (1 MiB by default). Default 1 MiB.
	BatchBytes int64
	// MaxAttempts is how many times a produce request is tried before the
	// write fails (and the client gets 503). Default 5.
	MaxAttempts int
	// Logger and ErrorLogger receive kafka-go's own logs; nil discards.
	Logger, ErrorLogger kafka.Logger
}

// Validate reports the first field at fault.
func (c WriterConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return fmt.Errorf("%w: kafka.brokers: at least one broker is required", ErrInvalidConfig)
	}
	if c.Topic == "" {
		return fmt.Errorf("%w: kafka.topic is required", ErrInvalidConfig)
	}
	return nil
}

// NewWriter returns the kafka-go Writer of the ingest path: acks from every
// in-sync replica (kafka-go's zero value would be fire-and-forget),
// synchronous, keyed with the same murmur2 hash as the Java client so that
// any producer keyed the same way lands on the same partition. A Writer is
// safe for concurrent use and batches concurrent requests together.
func NewWriter(c WriterConfig) (*kafka.Writer, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Linger <= 0 {
		c.Linger = 2 * time.Millisecond
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 1 << 20
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	return &kafka.Writer{
		Addr:                   kafka.TCP(c.Brokers...),
		Topic:                  c.Topic,
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		Async:                  false,
		BatchTimeout:           c.Linger,
		BatchSize:              c.BatchSize,
		BatchBytes:             c.BatchBytes,
		MaxAttempts:            c.MaxAttempts,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		AllowAutoTopicCreation: false,
		Logger:                 c.Logger,
		ErrorLogger:            c.ErrorLogger,
	}, nil
}
