package consumer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// ControlTopic is the compacted topic holding each target's desired state,
// keyed by target name.
const ControlTopic = "sluice.control"

// DesiredState is the value of a target's record in sluice.control: what
// operators want every replica of the target's applier to do.
type DesiredState struct {
	Paused    bool      `json:"paused"`
	Rewind    *Rewind   `json:"rewind,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	By        string    `json:"by"`
}

// Rewind asks every replica to move every partition back to an offset.
type Rewind struct {
	// ID names the rewind: each partition applies a given ID once.
	ID string `json:"id"`
	// ToTime or ToOffset ("earliest" or a number) is what was asked.
	ToTime   *time.Time `json:"to_time,omitempty"`
	ToOffset string     `json:"to_offset,omitempty"`
	// Offsets are the offsets resolved per partition when the rewind was
	// issued, so that every replica seeks to the same place.
	Offsets     map[int]int64 `json:"offsets"`
	RequestedAt time.Time     `json:"requested_at"`
}

// Errors of the control plane.
var (
	// ErrBeforeRetention is returned (wrapped) by ResolveRewind when the
	// rewind would need records that retention has already deleted.
	ErrBeforeRetention = errors.New("rewind reaches before the topic's retention")
	// ErrBadRewind is returned (wrapped) by ResolveRewind for a malformed request.
	ErrBadRewind = errors.New("bad rewind request")
)

// Control reads and writes sluice.control. Safe for concurrent use.
type Control struct {
	brokers []string
	topic   string
	writer  *kafka.Writer
	client  *kafka.Client
	tr      *kafka.Transport
}

// NewControl returns a Control on brokers; topic defaults to ControlTopic.
func NewControl(brokers []string, topic string) *Control {
	if topic == "" {
		topic = ControlTopic
	}
	tr := &kafka.Transport{MetadataTTL: time.Second}
	return &Control{
		brokers: brokers, topic: topic, tr: tr,
		client: &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr},
		writer: &kafka.Writer{
			Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll,
			BatchTimeout: time.Millisecond, Balancer: &kafka.Hash{}, Transport: tr,
		},
	}
}

// Close releases the writer and connections.
func (c *Control) Close() error {
	err := c.writer.Close()
	c.tr.CloseIdleConnections()
	return err
}

// Topic is the control topic's name.
func (c *Control) Topic() string { return c.topic }

// Current reads the control topic to its end and returns each target's
// latest desired state.
func (c *Control) Current(ctx context.Context) (map[string]DesiredState, error) {
	states := map[string]DesiredState{}
	err := readToEnd(ctx, c.brokers, c.topic, 0, func(m kafka.Message) { applyControlRecord(states, m) })
	if err != nil && !errors.Is(err, errNoTopic) {
		return nil, fmt.Errorf("read %s: %w", c.topic, err)
	}
	return states, nil
}

// errNoTopic is returned by readToEnd when the topic does not exist yet.
var errNoTopic = errors.New("topic does not exist")

// readToEnd reads partition 0 of a single-partition topic (the control
// topic, a DLQ) from offset from (or its start, if later) up to the end it
// has now, passing each record to fn.
func readToEnd(ctx context.Context, brokers []string, topic string, from int64, fn func(kafka.Message)) error {
	// A transport of its own: the process-wide default caches metadata,
	// which goes stale across a broker restart.
	tr := &kafka.Transport{MetadataTTL: time.Second}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
	resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{topic: {kafka.FirstOffsetOf(0), kafka.LastOffsetOf(0)}}})
	if err != nil {
		return err
	}
	parts := resp.Topics[topic]
	if len(parts) != 1 || parts[0].Error != nil {
		return fmt.Errorf("%w: %s", errNoTopic, topic)
	}
	from, end := max(from, parts[0].FirstOffset), parts[0].LastOffset
	if from >= end {
		return nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 200 * time.Millisecond})
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
			return nil
		}
	}
}

func applyControlRecord(states map[string]DesiredState, m kafka.Message) {
	if m.Value == nil { // a tombstone forgets the target
		delete(states, string(m.Key))
		return
	}
	var s DesiredState
	if json.Unmarshal(m.Value, &s) == nil {
		states[string(m.Key)] = s
	}
}

// Publish writes a target's desired state and returns once Kafka has it.
func (c *Control) Publish(ctx context.Context, target string, s DesiredState) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return c.writer.WriteMessages(ctx, kafka.Message{Key: []byte(target), Value: b})
}

// SetPaused pauses or resumes a target, keeping the rest of its state. It
// reports false, and writes nothing, when the target already is so.
func (c *Control) SetPaused(ctx context.Context, target string, paused bool, by string) (bool, error) {
	states, err := c.Current(ctx)
	if err != nil {
		return false, err
	}
	s := states[target]
	if s.Paused == paused {
		return false, nil
	}
	s.Paused, s.UpdatedAt, s.By = paused, time.Now().UTC(), by
	return true, c.Publish(ctx, target, s)
}

// RewindRequest is what an operator asks: exactly one of ToTime or ToOffset.
type RewindRequest struct {
	ToTime   *time.Time
	ToOffset string // "earliest" or a number
}

// ResolveRewind turns a request into offsets per partition of the events
// topic, refusing one that reaches before retention.
func (c *Control) ResolveRewind(ctx context.Context, eventsTopic string, req RewindRequest) (*Rewind, error) {
	if (req.ToTime == nil) == (req.ToOffset == "") {
		return nil, fmt.Errorf("%w: give exactly one of a time or an offset", ErrBadRewind)
	}
	var n int64
	if req.ToOffset != "" && req.ToOffset != "earliest" {
		var err error
		if n, err = strconv.ParseInt(req.ToOffset, 10, 64); err != nil || n < 0 {
			return nil, fmt.Errorf("%w: offset %q is neither \"earliest\" nor a non-negative number", ErrBadRewind, req.ToOffset)
		}
	}
	starts, ends, err := logBounds(ctx, c.client, eventsTopic)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	rw := &Rewind{ID: newRewindID(), ToTime: req.ToTime, ToOffset: req.ToOffset,
		Offsets: map[int]int64{}, RequestedAt: time.Now().UTC()}
	parts := make([]int, 0, len(ends))
	for p := range ends {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	switch {
	case req.ToOffset == "earliest":
		for _, p := range parts {
			rw.Offsets[p] = starts[p]
		}
	case req.ToOffset != "":
		for _, p := range parts {
			if n < starts[p] {
				return nil, fmt.Errorf("%w: partition %d starts at offset %d now; %d is gone", ErrBeforeRetention, p, starts[p], n)
			}
			rw.Offsets[p] = min(n, ends[p])
		}
	default:
		var reqs []kafka.OffsetRequest
		for _, p := range parts {
			reqs = append(reqs, kafka.TimeOffsetOf(p, *req.ToTime))
		}
		resp, err := c.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{eventsTopic: reqs}})
		if err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		for _, po := range resp.Topics[eventsTopic] {
			if po.Error != nil {
				return nil, fmt.Errorf("kafka: partition %d: %w", po.Partition, po.Error)
			}
			off := ends[po.Partition]   // nothing at or after the time: the end
			for o := range po.Offsets { // offset → timestamp; -1 when no record is that late
				if o >= 0 {
					off = min(off, o)
				}
			}
			if starts[po.Partition] > 0 && off == starts[po.Partition] {
				if err := c.checkRetention(ctx, eventsTopic, po.Partition, off, ends[po.Partition], *req.ToTime); err != nil {
					return nil, err
				}
			}
			rw.Offsets[po.Partition] = off
		}
	}
	return rw, nil
}

// checkRetention is asked about a partition that retention has trimmed and
// whose first record still held is where a rewind to t would start. Time
// retention deletes only records older than now − retention.ms, so: if a
// record is still held, refuse when it is later than t (records between may
// be gone); if retention emptied the partition, refuse when t is older than
// the retention horizon.
func (c *Control) checkRetention(ctx context.Context, topic string, partition int, start, end int64, t time.Time) error {
	if start < end {
		ts, err := recordTime(ctx, c.client, topic, partition, start)
		if err != nil { // unverifiable is not a pass: say so
			return fmt.Errorf("cannot check the retention of partition %d: %w", partition, err)
		}
		if ts.After(t) {
			return fmt.Errorf("%w: partition %d now starts at %s, after %s; the records between are gone",
				ErrBeforeRetention, partition, ts.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
		}
		return nil
	}
	retention, err := topicRetention(ctx, c.client, topic)
	if err != nil {
		return fmt.Errorf("cannot check the retention of %s: %w", topic, err)
	}
	if horizon := time.Now().Add(-retention); retention > 0 && t.Before(horizon) {
		return fmt.Errorf("%w: retention (%v) emptied partition %d; records before %s are gone",
			ErrBeforeRetention, retention, partition, horizon.UTC().Format(time.RFC3339))
	}
	return nil
}

// IssueRewind resolves req and publishes it for target, keeping its pause.
func (c *Control) IssueRewind(ctx context.Context, target, eventsTopic string, req RewindRequest, by string) (*Rewind, error) {
	rw, err := c.ResolveRewind(ctx, eventsTopic, req)
	if err != nil {
		return nil, err
	}
	states, err := c.Current(ctx)
	if err != nil {
		return nil, err
	}
	s := states[target]
	s.Rewind, s.UpdatedAt, s.By = rw, time.Now().UTC(), by
	return rw, c.Publish(ctx, target, s)
}

func newRewindID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// controlView is an applier's copy of its target's desired state, with a
// channel closed on every change so that workers waiting or fetching react
// at once.
type controlView struct {
	mu      sync.Mutex
	state   DesiredState
	changed chan struct{}
}

func newControlView() *controlView { return &controlView{changed: make(chan struct{})} }

func (v *controlView) get() (DesiredState, <-chan struct{}) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state, v.changed
}

func (v *controlView) set(s DesiredState) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.state = s
	close(v.changed)
	v.changed = make(chan struct{})
}
