package producer

import (
	"context"

	"github.com/segmentio/kafka-go"
)

// Appender appends records to the events topic and returns once every one of
// them is acknowledged, or with an error. The *kafka.Writer that
// kafkaadmin.Cluster.NewWriter builds is one: synchronous, acks from every
// in-sync replica, keyed with the Java client's murmur2 hash.
type Appender interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}
