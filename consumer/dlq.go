package consumer

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/deadletter"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
)

func newDLQWriter(c Config) *kafka.Writer {
	return c.Cluster.NewWriter(kafkaadmin.WriterConfig{
		Topic: c.DLQTopic, Linger: time.Millisecond, MaxAttempts: 3, Logger: c.Logger,
		BatchBytes: kafkaadmin.DLQMaxRecordBytes,
	})
}

// deadLetter appends the record, untouched, to the target's DLQ with headers
// naming the error, the target and where it came from. It returns only once
// Kafka has it: a record is never skipped before it is safe elsewhere.
func (a *Applier) deadLetter(ctx context.Context, r targetdb.Record, cause error) error {
	m := deadletter.Wrap(r.Msg, cause, targetdb.Classify(cause).String(), a.cfg.Target, a.cfg.now())
	m = deadletter.Fit(m, kafkaadmin.DLQMaxRecordBytes)
	return a.dlq.WriteMessages(ctx, m)
}
