package consumer

import (
	"context"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// The headers of a dead-lettered record.
const (
	HeaderError     = "sluice-error"
	HeaderClass     = "sluice-error-class"
	HeaderTarget    = "sluice-target"
	HeaderTopic     = "sluice-original-topic"
	HeaderPartition = "sluice-original-partition"
	HeaderOffset    = "sluice-original-offset"
	HeaderFailedAt  = "sluice-failed-at"
)

func newDLQWriter(c Config) *kafka.Writer {
	return &kafka.Writer{
		Addr:                   kafka.TCP(c.Brokers...),
		Topic:                  c.DLQTopic,
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           time.Millisecond,
		MaxAttempts:            3,
		AllowAutoTopicCreation: false,
	}
}

// deadLetter appends the record, untouched, to the target's DLQ with headers
// naming the error, the target and where it came from. It returns only once
// Kafka has it: a record is never skipped before it is safe elsewhere.
func (a *Applier) deadLetter(ctx context.Context, r record, cause error) error {
	m := r.msg
	headers := append([]kafka.Header{}, m.Headers...)
	headers = append(headers,
		kafka.Header{Key: HeaderError, Value: []byte(cause.Error())},
		kafka.Header{Key: HeaderClass, Value: []byte(Classify(cause).String())},
		kafka.Header{Key: HeaderTarget, Value: []byte(a.cfg.Target)},
		kafka.Header{Key: HeaderTopic, Value: []byte(m.Topic)},
		kafka.Header{Key: HeaderPartition, Value: []byte(strconv.Itoa(m.Partition))},
		kafka.Header{Key: HeaderOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
		kafka.Header{Key: HeaderFailedAt, Value: []byte(a.cfg.now().UTC().Format(time.RFC3339Nano))},
	)
	return a.dlq.WriteMessages(ctx, kafka.Message{Key: m.Key, Value: m.Value, Headers: headers})
}
