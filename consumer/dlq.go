package consumer

import (
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
)

func newDLQWriter(c Config) *kafka.Writer {
	return c.Cluster.NewWriter(kafkaadmin.WriterConfig{
		Topic: c.DLQTopic, Linger: time.Millisecond, MaxAttempts: 3, Logger: c.Logger,
		BatchBytes: kafkaadmin.DLQMaxRecordBytes,
	})
}
