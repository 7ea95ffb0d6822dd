package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"time"
)

// RewindRequest is what an operator asks: exactly one of ToTime or ToOffset.
type RewindRequest struct {
	ToTime   *time.Time
	ToOffset string // "earliest" or a number
}

// ResolveRewind turns a request into offsets per partition of the events
// topic, refusing one that reaches before retention. The rewind's id is
// provisional: IssueRewind names it after the target's last command.
func (p *Plane) ResolveRewind(ctx context.Context, eventsTopic string, req RewindRequest) (*Rewind, error) {
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
	starts, ends, err := p.cluster.LogBounds(ctx, eventsTopic)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	// The id is provisional: IssueRewind renames the rewind after the
	// commands already issued for its target.
	now := p.now().UTC()
	rw := &Rewind{ID: newRewindID(now), ToTime: req.ToTime, ToOffset: req.ToOffset,
		Offsets: map[int]int64{}, RequestedAt: now}
	parts := make([]int, 0, len(ends))
	for id := range ends {
		parts = append(parts, id)
	}
	sort.Ints(parts)
	switch {
	case req.ToOffset == "earliest":
		for _, id := range parts {
			rw.Offsets[id] = starts[id]
		}
	case req.ToOffset != "":
		for _, id := range parts {
			if n < starts[id] {
				return nil, fmt.Errorf("%w: partition %d starts at offset %d now; %d is gone", ErrBeforeRetention, id, starts[id], n)
			}
			rw.Offsets[id] = min(n, ends[id])
		}
	default:
		offsets, err := p.cluster.OffsetsAt(ctx, eventsTopic, parts, *req.ToTime, ends)
		if err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		for id, off := range offsets {
			if starts[id] > 0 && off == starts[id] {
				if err := p.checkRetention(ctx, eventsTopic, id, off, ends[id], *req.ToTime); err != nil {
					return nil, err
				}
			}
			rw.Offsets[id] = off
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
func (p *Plane) checkRetention(ctx context.Context, topic string, partition int, start, end int64, t time.Time) error {
	if start < end {
		ts, err := p.cluster.RecordTime(ctx, topic, partition, start)
		if err != nil { // unverifiable is not a pass: say so
			return fmt.Errorf("cannot check the retention of partition %d: %w", partition, err)
		}
		if ts.After(t) {
			return fmt.Errorf("%w: partition %d now starts at %s, after %s; the records between are gone",
				ErrBeforeRetention, partition, ts.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
		}
		return nil
	}
	retention, err := p.cluster.Retention(ctx, topic)
	if err != nil {
		return fmt.Errorf("cannot check the retention of %s: %w", topic, err)
	}
	if horizon := p.now().Add(-retention); retention > 0 && t.Before(horizon) {
		return fmt.Errorf("%w: retention (%v) emptied partition %d; records before %s are gone",
			ErrBeforeRetention, retention, partition, horizon.UTC().Format(time.RFC3339))
	}
	return nil
}

// idLayout starts every command id: fixed-width UTC time to the
// nanosecond, so that ids sort as strings in time order. Appliers compare
// ids as strings (consumer's nextCommand, targetdb's rewind_id column): the
// layout must keep its width.
const idLayout = "20060102T150405.000000000Z"

// newRewindID names a rewind issued at t: t in idLayout, then random hex
// so that two ids never collide.
func newRewindID(t time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return t.UTC().Format(idLayout) + "-" + hex.EncodeToString(b[:])
}

// idTime is the time an id names, or false for an id not in idLayout.
func idTime(id string) (time.Time, bool) {
	if len(id) < len(idLayout) {
		return time.Time{}, false
	}
	t, err := time.Parse(idLayout, id[:len(idLayout)])
	return t, err == nil
}

// commandID names a command issued now for a target whose accepted state
// is s. A partition applies a command only if its id sorts after the last
// one it applied, so the id must sort after every id already issued, also
// when this host's clock is behind the clock of the host that issued the
// last one: its time is the local time, or 1ns after the latest command in
// s when the local time is not after it. s holds the last rewind and the
// last skip, and every earlier id sorts before one of them, so comparing
// with those two is enough; both count because a partition keeps one last
// id for rewinds and skips alike. update writes the command only as the
// next version of s, so a command issued concurrently from elsewhere
// either is in s or makes this one lose (ErrConflict).
func (p *Plane) commandID(s DesiredState) (string, error) {
	t := p.now().UTC()
	for _, c := range []*Rewind{s.Rewind, s.Skip} {
		if c == nil {
			continue
		}
		prev, ok := idTime(c.ID)
		if !ok {
			continue // not issued by sluice: checked below
		}
		if !t.After(prev) {
			t = prev.Add(time.Nanosecond)
		}
	}
	id := newRewindID(t)
	for _, c := range []*Rewind{s.Rewind, s.Skip} {
		if c != nil && c.ID >= id {
			// An id written by hand that sorts after any time: every
			// applier would ignore the command, so refuse to issue it.
			return "", fmt.Errorf("%w: the target's last command %q sorts after any id that can be issued", ErrBadRewind, c.ID)
		}
	}
	return id, nil
}

// ResolveSkip turns a skip request — "latest" or an offset — into offsets
// per partition of the events topic, each at most the partition's end. The
// skip's id is provisional: IssueSkip names it after the target's last
// command.
func (p *Plane) ResolveSkip(ctx context.Context, eventsTopic, toOffset string) (*Rewind, error) {
	var n int64
	if toOffset != "latest" {
		var err error
		if n, err = strconv.ParseInt(toOffset, 10, 64); err != nil || n < 0 {
			return nil, fmt.Errorf("%w: skip offset %q is neither \"latest\" nor a non-negative number", ErrBadRewind, toOffset)
		}
	}
	_, ends, err := p.cluster.LogBounds(ctx, eventsTopic)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	// The id is provisional: IssueSkip renames the skip after the commands
	// already issued for its target.
	now := p.now().UTC()
	skip := &Rewind{ID: newRewindID(now), ToOffset: toOffset, Offsets: map[int]int64{}, RequestedAt: now}
	for id, end := range ends {
		skip.Offsets[id] = end
		if toOffset != "latest" {
			skip.Offsets[id] = min(n, end)
		}
	}
	return skip, nil
}
