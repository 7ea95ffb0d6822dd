package kafkaadmin

import (
	"context"
	"fmt"

	"github.com/segmentio/kafka-go"
)

// ReadToEnd reads the one partition of a single-partition topic (control,
// status, a DLQ) from offset from (or its start, if later) up to the end it
// has now, passing each record to fn. A missing topic is ErrNoTopic.
func (c *Cluster) ReadToEnd(ctx context.Context, topic string, from int64, fn func(kafka.Message)) error {
	return c.tail(ctx, topic, from, false, nil, fn)
}

// Follow reads the one partition of a single-partition topic from its start,
// calls caughtUp once it has passed the end the topic had when Follow began
// (at once for an empty topic), and goes on passing new records to fn until
// ctx ends or the connection fails. Its caller retries.
func (c *Cluster) Follow(ctx context.Context, topic string, caughtUp func(), fn func(kafka.Message)) error {
	return c.tail(ctx, topic, 0, true, caughtUp, fn)
}

func (c *Cluster) tail(ctx context.Context, topic string, from int64, follow bool, caughtUp func(), fn func(kafka.Message)) error {
	ids, err := c.PartitionIDs(ctx, topic)
	if err != nil {
		return err
	}
	if len(ids) != 1 {
		return fmt.Errorf("%w: %s has %d", ErrPartitionCount, topic, len(ids))
	}
	starts, ends, err := c.LogBounds(ctx, topic)
	if err != nil {
		return err
	}
	from, end := max(from, starts[0]), ends[0]
	reached := func() {
		if caughtUp != nil {
			caughtUp()
			caughtUp = nil
		}
	}
	if from >= end {
		reached()
		if !follow {
			return nil
		}
	}
	r := c.NewReader(ReaderConfig{Topic: topic, Partition: 0, MaxWait: FollowWait, MaxBytes: DLQMaxRecordBytes + 1<<20})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return err
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return err
		}
		fn(m)
		if m.Offset >= end-1 {
			reached()
			if !follow {
				return nil
			}
		}
	}
}
