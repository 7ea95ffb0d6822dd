package consumer

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// partitionState is what a partition worker shares with the lag monitor.
type partitionState struct {
	next atomic.Int64 // next offset to apply: everything before it is in the target
	end  atomic.Int64 // log-end offset, as last measured

	// The timestamp of the record at next, cached by the monitor.
	stampedOffset int64
	stamp         time.Time
}

// partitionSet holds the partitions this replica owns right now.
type partitionSet struct {
	mu sync.Mutex
	m  map[int]*partitionState
}

func (s *partitionSet) add(id int, next int64) *partitionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[int]*partitionState{}
	}
	st := &partitionState{stampedOffset: -1}
	st.next.Store(next)
	st.end.Store(-1)
	s.m[id] = st
	return st
}

func (s *partitionSet) remove(id int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

func (s *partitionSet) snapshot() map[int]*partitionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]*partitionState, len(s.m))
	for k, v := range s.m {
		out[k] = v
	}
	return out
}

// monitorLag measures lag every LagInterval until ctx ends: messages = log
// end − next offset to apply; seconds = age of the record at the next
// offset (0 when caught up). It asks the broker, not the reader, so a worker
// that is stuck — breaker open, database locked — still shows its lag grow.
func (a *Applier) monitorLag(ctx context.Context) {
	transport := &kafka.Transport{MetadataTTL: 5 * time.Second}
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(a.cfg.Brokers...), Timeout: 5 * time.Second, Transport: transport}
	known := map[int]bool{}
	t := time.NewTicker(a.cfg.LagInterval)
	defer t.Stop()
	var retentionRead time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(retentionRead) > time.Minute {
			if r, err := topicRetention(ctx, client, a.cfg.Topic); err == nil {
				a.m.retention.Set(r.Seconds())
				retentionRead = time.Now()
			}
		}
		parts := a.partitions.snapshot()
		for id := range known {
			if parts[id] == nil { // revoked: another replica reports it now
				a.m.lagMessages.DeleteLabelValues(a.cfg.Target, strconv.Itoa(id))
				delete(known, id)
			}
		}
		if len(parts) == 0 {
			a.m.lagSeconds.Set(0)
			continue
		}
		mctx, cancel := context.WithTimeout(ctx, a.cfg.LagInterval*3)
		worst, err := a.measureLag(mctx, client, parts)
		cancel()
		if err != nil {
			a.log.Debug("lag not measured", "err", err)
			continue
		}
		for id := range parts {
			known[id] = true
		}
		a.m.lagSeconds.Set(worst.Seconds())
	}
}

func (a *Applier) measureLag(ctx context.Context, client *kafka.Client, parts map[int]*partitionState) (time.Duration, error) {
	reqs := make([]kafka.OffsetRequest, 0, len(parts))
	for id := range parts {
		reqs = append(reqs, kafka.LastOffsetOf(id))
	}
	resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{a.cfg.Topic: reqs}})
	if err != nil {
		return 0, err
	}
	var worst time.Duration
	for _, po := range resp.Topics[a.cfg.Topic] {
		st := parts[po.Partition]
		if st == nil || po.Error != nil {
			continue
		}
		st.end.Store(po.LastOffset)
		next := st.next.Load()
		behind := max(po.LastOffset-next, 0)
		a.m.setLag(po.Partition, behind)
		if behind == 0 {
			continue
		}
		if st.stampedOffset != next {
			ts, err := recordTime(ctx, client, a.cfg.Topic, po.Partition, next)
			if err != nil {
				continue
			}
			st.stampedOffset, st.stamp = next, ts
		}
		worst = max(worst, a.cfg.now().Sub(st.stamp))
	}
	return worst, nil
}

// recordTime reads the timestamp of the record at offset.
func recordTime(ctx context.Context, client *kafka.Client, topic string, partition int, offset int64) (time.Time, error) {
	resp, err := client.Fetch(ctx, &kafka.FetchRequest{
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
			return time.Time{}, err
		}
		if rec.Offset >= offset { // a fetch starts at the batch holding offset
			return rec.Time, nil
		}
	}
}

// topicRetention reads the topic's retention.ms from the broker; -1s means
// unlimited.
func topicRetention(ctx context.Context, client *kafka.Client, topic string) (time.Duration, error) {
	resp, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
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
