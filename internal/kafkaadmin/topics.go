package kafkaadmin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicSpec is a topic sluice creates when it is missing.
type TopicSpec struct {
	Name       string
	Partitions int
	Config     map[string]string
}

// EventsTopicSpec is the events topic: partitions bound how many appliers
// of one target work in parallel; retention is the buffer, the time a target
// can be down before events are lost to it.
func EventsTopicSpec(name string, partitions int, retention time.Duration) TopicSpec {
	return TopicSpec{Name: name, Partitions: partitions, Config: map[string]string{
		"retention.ms":     strconv.FormatInt(retention.Milliseconds(), 10),
		"cleanup.policy":   "delete",
		"compression.type": "producer",
	}}
}

// ControlTopicSpec is compacted, with one partition: the latest desired
// state per target is all that matters, it must never expire, and followers
// read it in order.
func ControlTopicSpec() TopicSpec {
	return TopicSpec{Name: ControlTopic, Partitions: 1, Config: map[string]string{
		"cleanup.policy": "compact", "retention.ms": "-1", "min.cleanable.dirty.ratio": "0.1",
	}}
}

// StatusTopicSpec is compacted, with one partition: the latest status of
// each applier replica. Tombstones (a replica that stopped cleanly) are
// kept a minute so that readers see the replica go.
func StatusTopicSpec() TopicSpec {
	return TopicSpec{Name: StatusTopic, Partitions: 1, Config: map[string]string{
		"cleanup.policy": "compact", "retention.ms": "-1", "min.cleanable.dirty.ratio": "0.1",
		"segment.ms": "600000", "delete.retention.ms": "60000",
	}}
}

// DLQMaxRecordBytes is the largest record a DLQ topic takes: far above the
// largest event ingest accepts plus sluice's headers, so that a dead letter
// always fits and a partition can never stall on its own poison event.
const DLQMaxRecordBytes = 8 << 20

// DLQTopicSpec is a target's dead-letter topic: one partition (replays go in
// order), kept forever, taking records up to DLQMaxRecordBytes.
func DLQTopicSpec(target string) TopicSpec {
	return TopicSpec{Name: DLQTopic(target), Partitions: 1, Config: map[string]string{
		"retention.ms": "-1", "max.message.bytes": strconv.Itoa(DLQMaxRecordBytes),
	}}
}

// EnsureTopics creates the topics of specs that are missing and waits until
// every partition has a leader. Consumers must never start on a missing
// topic (kafka-go readers started before their topic exists may never
// recover), and sluice never relies on auto-creation. A single-partition
// spec whose topic exists with more partitions is refused (ErrPartitionCount).
func (c *Cluster) EnsureTopics(ctx context.Context, replication int, specs ...TopicSpec) error {
	// A transport of its own with a short metadata TTL: the shared one would
	// answer "no such topic" from its cache for a while after creation.
	tr := &kafka.Transport{ClientID: c.transport.ClientID, DialTimeout: DialTimeout, MetadataTTL: 200 * time.Millisecond,
		TLS: c.transport.TLS, SASL: c.transport.SASL}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: c.client.Addr, Timeout: RequestTimeout, Transport: tr}
	req := &kafka.CreateTopicsRequest{}
	for _, s := range specs {
		req.Topics = append(req.Topics, topicConfig(s, replication))
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
		names[i] = s.Name
	}
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		if err == nil && allLed(md, len(names)) {
			return checkPartitionCounts(md, specs)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for topic leaders: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// topicConfig is what CreateTopics is asked for s. Unless s says otherwise,
// min.insync.replicas is one less than the replication factor (at least
// one): acks=all then means a write is on two brokers before ingest answers
// 202 with replication 3, and one broker may be down without refusing
// writes. With the broker's default of 1, acks=all protects nothing.
func topicConfig(s TopicSpec, replication int) kafka.TopicConfig {
	tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: s.Partitions, ReplicationFactor: replication}
	config := map[string]string{"min.insync.replicas": strconv.Itoa(MinInSyncReplicas(replication))}
	maps.Copy(config, s.Config)
	for _, k := range slices.Sorted(maps.Keys(config)) {
		tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: config[k]})
	}
	return tc
}

// MinInSyncReplicas is the min.insync.replicas sluice gives its topics:
// the replication factor less one, at least one.
func MinInSyncReplicas(replication int) int { return max(replication-1, 1) }

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

func checkPartitionCounts(md *kafka.MetadataResponse, specs []TopicSpec) error {
	for _, s := range specs {
		if s.Partitions != 1 {
			continue
		}
		for _, t := range md.Topics {
			if t.Name == s.Name && len(t.Partitions) != 1 {
				return fmt.Errorf("%w: %s has %d partitions; delete it and let sluice create it", ErrPartitionCount, s.Name, len(t.Partitions))
			}
		}
	}
	return nil
}

// EnsureTopicsRetrying calls EnsureTopics until it succeeds or ctx ends: a
// broker that is down at start is waited for, not a reason to crash-loop.
// ErrPartitionCount is not retried: waiting cannot fix it.
func (c *Cluster) EnsureTopicsRetrying(ctx context.Context, replication int, specs ...TopicSpec) error {
	for attempt := 0; ; attempt++ {
		tctx, cancel := context.WithTimeout(ctx, 3*RequestTimeout)
		err := c.EnsureTopics(tctx, replication, specs...)
		cancel()
		if err == nil || errors.Is(err, ErrPartitionCount) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.log.Warn("kafka topics not ready; retrying", "err", err, "attempt", attempt)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(attempt+1)*500*time.Millisecond, 5*time.Second)):
		}
	}
}
