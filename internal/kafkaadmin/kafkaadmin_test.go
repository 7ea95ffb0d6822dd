package kafkaadmin_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/testenv"
)

func TestTopicsBoundsAndReadingToTheEnd(t *testing.T) {
	c := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Probe(ctx); err != nil {
		t.Fatalf("probe: %v", err)
	}
	name := "sluice.test.one." + testenv.ID()
	single := kafkaadmin.TopicSpec{Name: name, Partitions: 1}
	if err := c.EnsureTopics(ctx, 1, single); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureTopics(ctx, 1, single); err != nil {
		t.Fatalf("ensuring an existing topic: %v", err)
	}
	w := c.NewWriter(kafkaadmin.WriterConfig{Topic: name})
	defer w.Close()
	for i := range 5 {
		if err := w.WriteMessages(ctx, kafka.Message{Value: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	starts, ends, err := c.LogBounds(ctx, name)
	if err != nil || starts[0] != 0 || ends[0] != 5 {
		t.Fatalf("bounds %v %v %v, want [0, 5)", starts, ends, err)
	}
	var got []string
	if err := c.ReadToEnd(ctx, name, 2, func(m kafka.Message) { got = append(got, string(m.Value)) }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[2 3 4]" {
		t.Fatalf("read %v from offset 2, want [2 3 4]", got)
	}
	if _, err := c.RecordTime(ctx, name, 0, 3); err != nil {
		t.Fatalf("record time: %v", err)
	}

	multi := "sluice.test.many." + testenv.ID()
	if err := c.EnsureTopics(ctx, 1, kafkaadmin.TopicSpec{Name: multi, Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureTopics(ctx, 1, kafkaadmin.TopicSpec{Name: multi, Partitions: 1}); !errors.Is(err, kafkaadmin.ErrPartitionCount) {
		t.Fatalf("a single-partition topic found with 3 partitions: %v, want ErrPartitionCount", err)
	}
	if err := c.ReadToEnd(ctx, multi, 0, func(kafka.Message) {}); !errors.Is(err, kafkaadmin.ErrPartitionCount) {
		t.Fatalf("reading a 3-partition topic as one: %v, want ErrPartitionCount", err)
	}
	if err := c.ReadToEnd(ctx, "sluice.test.missing."+testenv.ID(), 0, func(kafka.Message) {}); !errors.Is(err, kafkaadmin.ErrNoTopic) {
		t.Fatalf("reading a missing topic: %v, want ErrNoTopic", err)
	}
}
