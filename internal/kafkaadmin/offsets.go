package kafkaadmin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// LogBounds returns, per partition of topic, the first offset still held
// and the log-end offset (the offset the next record will get).
func (c *Cluster) LogBounds(ctx context.Context, topic string) (starts, ends map[int]int64, err error) {
	ids, err := c.PartitionIDs(ctx, topic)
	if err != nil {
		return nil, nil, err
	}
	reqs := make([]kafka.OffsetRequest, 0, 2*len(ids))
	for _, p := range ids {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	resp, err := c.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	starts, ends = map[int]int64{}, map[int]int64{}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, nil, fmt.Errorf("list offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		starts[po.Partition], ends[po.Partition] = po.FirstOffset, po.LastOffset
	}
	return starts, ends, nil
}

// EndOffsets returns the log-end offset of each of the given partitions.
func (c *Cluster) EndOffsets(ctx context.Context, topic string, partitions []int) (map[int]int64, error) {
	reqs := make([]kafka.OffsetRequest, len(partitions))
	for i, p := range partitions {
		reqs[i] = kafka.LastOffsetOf(p)
	}
	resp, err := c.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	ends := map[int]int64{}
	for _, po := range resp.Topics[topic] {
		if po.Error == nil {
			ends[po.Partition] = po.LastOffset
		}
	}
	return ends, nil
}

// OffsetsAt returns, per partition, the first offset whose record's time is
// at or after t, or the log end when no record is that late.
func (c *Cluster) OffsetsAt(ctx context.Context, topic string, partitions []int, t time.Time, ends map[int]int64) (map[int]int64, error) {
	reqs := make([]kafka.OffsetRequest, len(partitions))
	for i, p := range partitions {
		reqs[i] = kafka.TimeOffsetOf(p, t)
	}
	resp, err := c.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s at %s: %w", topic, t.Format(time.RFC3339), err)
	}
	out := map[int]int64{}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		off := ends[po.Partition]
		for o := range po.Offsets { // offset → timestamp; -1 when no record is that late
			if o >= 0 {
				off = min(off, o)
			}
		}
		out[po.Partition] = off
	}
	return out, nil
}

// PartitionIDs returns the partitions of topic, or ErrNoTopic. A topic the
// transport's metadata cache does not know yet is asked about once more
// after the cache's TTL: it may have been created a moment ago.
func (c *Cluster) PartitionIDs(ctx context.Context, topic string) ([]int, error) {
	ids, err := c.partitionIDs(ctx, topic)
	if errors.Is(err, ErrNoTopic) {
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(MetadataTTL + 100*time.Millisecond):
		}
		ids, err = c.partitionIDs(ctx, topic)
	}
	return ids, err
}

func (c *Cluster) partitionIDs(ctx context.Context, topic string) ([]int, error) {
	md, err := c.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil || len(md.Topics[0].Partitions) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoTopic, topic)
	}
	ids := make([]int, len(md.Topics[0].Partitions))
	for i, p := range md.Topics[0].Partitions {
		ids[i] = p.ID
	}
	return ids, nil
}

// RecordTime reads the timestamp of the record at offset.
func (c *Cluster) RecordTime(ctx context.Context, topic string, partition int, offset int64) (time.Time, error) {
	resp, err := c.client.Fetch(ctx, &kafka.FetchRequest{
		Topic: topic, Partition: partition, Offset: offset,
		MinBytes: 1, MaxBytes: 256 << 10, MaxWait: 100 * time.Millisecond,
	})
	if err != nil {
		return time.Time{}, err
	}
	if resp.Error != nil {
		return time.Time{}, resp.Error
	}
	for {
		rec, err := resp.Records.ReadRecord()
		if err != nil {
			return time.Time{}, fmt.Errorf("record %s/%d@%d: %w", topic, partition, offset, err)
		}
		if rec.Offset >= offset { // a fetch starts at the batch holding offset
			return rec.Time, nil
		}
	}
}

// Retention reads the topic's retention.ms from the broker; -1s means
// unlimited.
func (c *Cluster) Retention(ctx context.Context, topic string) (time.Duration, error) {
	resp, err := c.client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"retention.ms"}}}})
	if err != nil {
		return 0, err
	}
	for _, r := range resp.Resources {
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "retention.ms" {
				ms, err := strconv.ParseInt(e.ConfigValue, 10, 64)
				if err != nil {
					return 0, err
				}
				if ms < 0 {
					return -time.Second, nil
				}
				return time.Duration(ms) * time.Millisecond, nil
			}
		}
	}
	return 0, fmt.Errorf("retention.ms of %s not reported", topic)
}

// GroupOffsets returns the offsets group committed on the given partitions
// of topic (-1 for a partition it never committed).
func (c *Cluster) GroupOffsets(ctx context.Context, topic, group string, partitions []int) (map[int]int64, error) {
	resp, err := c.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: partitions}})
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error == nil {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// DeleteGroup deletes a consumer group (it must have no members) through
// its coordinator. A group that does not exist is not an error.
func (c *Cluster) DeleteGroup(ctx context.Context, group string) error {
	fc, err := c.client.FindCoordinator(ctx, &kafka.FindCoordinatorRequest{Key: group, KeyType: kafka.CoordinatorKeyTypeConsumer})
	if err != nil {
		return fmt.Errorf("find the coordinator of %s: %w", group, err)
	}
	if fc.Error != nil {
		return fmt.Errorf("find the coordinator of %s: %w", group, fc.Error)
	}
	addr := kafka.TCP(fmt.Sprintf("%s:%d", fc.Coordinator.Host, fc.Coordinator.Port))
	resp, err := c.client.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{Addr: addr, GroupIDs: []string{group}})
	if err != nil {
		return fmt.Errorf("delete group %s: %w", group, err)
	}
	if err := resp.Errors[group]; err != nil && !errors.Is(err, kafka.GroupIdNotFound) {
		return fmt.Errorf("delete group %s: %w", group, err)
	}
	return nil
}
