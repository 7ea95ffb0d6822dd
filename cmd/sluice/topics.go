package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/consumer"
)

type topicSpec struct {
	name       string
	partitions int
	config     map[string]string
}

// ensureTopics creates the topics sluice needs when they are missing and
// waits until every partition has a leader. Consumers must never start on a
// missing topic (kafka-go readers started before their topic exists may
// never recover), and brokers here run with auto-creation off.
func ensureTopics(ctx context.Context, brokers []string, replication int, specs []topicSpec) error {
	// A transport of our own, with a short metadata TTL: kafka-go answers
	// Metadata from a cache (6s by default) shared by every Client of the
	// process, which would hide a topic that was just created.
	transport := &kafka.Transport{MetadataTTL: 200 * time.Millisecond}
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: transport}
	req := &kafka.CreateTopicsRequest{}
	for _, s := range specs {
		tc := kafka.TopicConfig{Topic: s.name, NumPartitions: s.partitions, ReplicationFactor: replication}
		for k, v := range s.config {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
		}
		req.Topics = append(req.Topics, tc)
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for topic, err := range resp.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.name
	}
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		if err == nil && allLed(md, len(names)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for topic leaders: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func allLed(md *kafka.MetadataResponse, want int) bool {
	if len(md.Topics) != want {
		return false
	}
	for _, t := range md.Topics {
		if t.Error != nil || len(t.Partitions) == 0 {
			return false
		}
		for _, p := range t.Partitions {
			if p.Error != nil || p.Leader.ID < 0 || p.Leader.Host == "" {
				return false
			}
		}
	}
	return true
}

func eventsTopic(c *config) topicSpec {
	return topicSpec{
		name:       c.Kafka.Topic,
		partitions: c.Kafka.Partitions,
		config: map[string]string{
			"retention.ms":     strconv.FormatInt(time.Duration(c.Kafka.Retention).Milliseconds(), 10),
			"cleanup.policy":   "delete",
			"compression.type": "producer",
		},
	}
}

// controlTopic is compacted: the latest desired state per target is all
// that matters, and it must never expire.
func controlTopic() topicSpec {
	return topicSpec{name: consumer.ControlTopic, partitions: 1, config: map[string]string{
		"cleanup.policy": "compact", "retention.ms": "-1", "min.cleanable.dirty.ratio": "0.1",
	}}
}

func dlqTopic(target string) topicSpec {
	return topicSpec{name: consumer.DLQTopic(target), partitions: 1, config: map[string]string{"retention.ms": "-1"}}
}

// ensureTopicsRetrying keeps trying until it succeeds or ctx ends: a broker
// that is down at start is waited for, not a reason to crash-loop.
func ensureTopicsRetrying(ctx context.Context, log *slog.Logger, brokers []string, replication int, specs []topicSpec) error {
	for attempt := 0; ; attempt++ {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := ensureTopics(tctx, brokers, replication, specs)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("kafka topics not ready; retrying", "err", err, "attempt", attempt)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(attempt+1)*500*time.Millisecond, 5*time.Second)):
		}
	}
}

// probeKafka makes a real round trip to a broker. kafka.Client.Metadata
// would not do: it is served from a cache, and says nothing about whether a
// broker answers now.
func probeKafka(ctx context.Context, brokers []string) error {
	var last error
	for _, addr := range brokers {
		conn, err := (&kafka.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", addr)
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
