package control

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/testenv"
)

// idAt is a command id issued at t, in the format appliers compare as
// strings (consumer nextCommand, targetdb's rewind_id < EXCLUDED.rewind_id).
func idAt(t time.Time) string {
	return t.UTC().Format("20060102T150405.000000000Z") + "-0123456789ab"
}

// An operator's host whose clock is behind the host that issued the last
// command must still issue an id that sorts after it: appliers apply a
// command only if its id sorts after the last one they applied.
func TestACommandSortsAfterEveryCommandAlreadyIssued(t *testing.T) {
	p, cluster := newTestPlane(t)
	ctx := context.Background()
	topic := testenv.Topic(t, cluster, 2)
	publishEvents(t, cluster, topic, 0, 3)
	hourAhead := time.Now().Add(time.Hour)
	rewind := func(target string) (string, error) {
		rw, err := p.IssueRewind(ctx, target, topic, RewindRequest{ToOffset: "earliest"}, "behind")
		if rw == nil {
			return "", err
		}
		return rw.ID, err
	}
	skip := func(target string) (string, error) {
		sk, err := p.ResolveSkip(ctx, topic, "latest")
		if err != nil {
			return "", err
		}
		err = p.IssueSkip(ctx, target, sk, "behind")
		return sk.ID, err
	}
	cases := []struct {
		name   string
		prior  *DesiredState // published first, as if by another host
		issue  func(target string) (string, error)
		isSkip bool
	}{
		{"a rewind from a host an hour behind the last rewind's sorts after it",
			&DesiredState{Version: 1, Rewind: &Rewind{ID: idAt(hourAhead)}}, rewind, false},
		{"a skip from a host an hour behind the last skip's sorts after it",
			&DesiredState{Version: 1, Skip: &Rewind{ID: idAt(hourAhead)}}, skip, true},
		{"a rewind sorts after a skip from a host ahead, as partitions keep one last id for both",
			&DesiredState{Version: 1, Skip: &Rewind{ID: idAt(hourAhead)}}, rewind, false},
		{"a skip sorts after a rewind from a host ahead, as partitions keep one last id for both",
			&DesiredState{Version: 1, Rewind: &Rewind{ID: idAt(hourAhead)}}, skip, true},
		{"a skip resolved before another operator's rewind was issued sorts after that rewind", nil,
			func(target string) (string, error) {
				sk, err := p.ResolveSkip(ctx, topic, "latest")
				if err != nil {
					return "", err
				}
				// The operator reads the preview while someone else rewinds.
				if err := p.Publish(ctx, target, DesiredState{Version: 1, Rewind: &Rewind{ID: idAt(time.Now().Add(time.Millisecond))}}); err != nil {
					return "", err
				}
				err = p.IssueSkip(ctx, target, sk, "previewer")
				return sk.ID, err
			}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			target := "t" + testenv.ID()
			if c.prior != nil {
				if err := p.Publish(ctx, target, *c.prior); err != nil {
					t.Fatal(err)
				}
			}
			states, err := p.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			before := states[target]
			if c.prior == nil { // the case published its own state mid-way
				before = DesiredState{}
			}
			id, err := c.issue(target)
			if err != nil {
				t.Fatalf("issue: %v", err)
			}
			states, err = p.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			now := states[target]
			for _, prev := range []*Rewind{before.Rewind, before.Skip, now.Rewind, now.Skip} {
				if prev == nil || prev.ID == id {
					continue
				}
				if id <= prev.ID || len(id) != len(prev.ID) {
					t.Errorf("id %s does not sort after %s with the same width: every applier ignores it", id, prev.ID)
				}
			}
			if _, err := time.Parse("20060102T150405.000000000Z", id[:26]); err != nil {
				t.Errorf("id %s does not start with its time: %v", id, err)
			}
			got := now.Rewind
			if c.isSkip {
				got = now.Skip
			}
			if got == nil || got.ID != id {
				t.Errorf("the command %s was reported issued but the accepted state holds %+v", id, got)
			}
		})
	}
}

// Compaction keeps only the newest record of each key, and may run at any
// point of the log: whatever part of the history it collapsed, a reader
// folds the log to the same state as one that read every record.
func TestACompactedLogFoldsToTheSameState(t *testing.T) {
	st := func(version int64, paused bool, by string) DesiredState {
		return DesiredState{Version: version, Paused: paused, By: by, Write: by}
	}
	cases := []struct {
		name    string
		history []DesiredState
	}{
		{"a loser that raced the winner for one version is followed by the winner re-published",
			[]DesiredState{st(1, false, "base"), st(2, true, "winner"), st(2, false, "loser"), st(3, true, "winner")}},
		{"a loser based on a state two versions old is followed by the winner re-published",
			[]DesiredState{st(1, false, "base"), st(2, true, "a"), st(3, true, "b"), st(2, false, "loser"), st(4, true, "b")}},
		{"a repair that itself lost a race carries the accepted state anyway",
			[]DesiredState{st(1, false, "base"), st(2, true, "winner"), st(2, false, "loser"), st(3, true, "winner"), st(3, true, "winner"), st(4, false, "next")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fold := func(h []DesiredState) DesiredState {
				f := newFold()
				for _, s := range h {
					b, _ := json.Marshal(s)
					f.apply(kafka.Message{Key: []byte("b"), Value: b})
				}
				return f.states["b"]
			}
			want := fold(c.history)
			for cut := 1; cut <= len(c.history); cut++ {
				// Compaction collapsed history[:cut] to its newest record.
				got := fold(c.history[cut-1:])
				if got.Paused != want.Paused || got.By != want.By {
					t.Errorf("compacted up to record %d: state by %s paused %v; the full log says by %s paused %v",
						cut, got.By, got.Paused, want.By, want.Paused)
				}
			}
		})
	}
}

// A write that lost its race and is the newest record of its target (its
// writer's re-publish of the winner failed, or its writer died) would be
// all compaction leaves: the next read re-publishes the accepted state.
func TestTheNextReadLeavesTheAcceptedStateNewest(t *testing.T) {
	p, _ := newTestPlane(t)
	ctx := context.Background()
	st := func(version int64, paused bool, by string) DesiredState {
		return DesiredState{Version: version, Paused: paused, By: by, Write: by + testenv.ID()}
	}
	cases := []struct {
		name    string
		history []DesiredState
	}{
		{"a loser that raced the winner for one version",
			[]DesiredState{st(1, false, "base"), st(2, true, "winner"), st(2, false, "loser")}},
		{"a loser based on a state two versions old",
			[]DesiredState{st(1, false, "base"), st(2, false, "a"), st(3, true, "winner"), st(2, false, "loser")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			target := "t" + testenv.ID()
			for _, s := range c.history {
				if err := p.Publish(ctx, target, s); err != nil {
					t.Fatal(err)
				}
			}
			states, err := p.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if s := states[target]; s.By != "winner" || !s.Paused {
				t.Fatalf("accepted state by %s paused %v, want the winner's", s.By, s.Paused)
			}
			compacted := lastRecord(t, p, target)
			if compacted.By != "winner" || !compacted.Paused {
				t.Errorf("after compaction a restarted replica would obey the state by %s (paused %v), not the winner's",
					compacted.By, compacted.Paused)
			}
		})
	}
}

// lastRecord is the newest record of target in the control topic: all
// compaction leaves of it.
func lastRecord(t *testing.T, p *Plane, target string) DesiredState {
	t.Helper()
	var last kafka.Message
	err := p.cluster.ReadToEnd(context.Background(), kafkaadmin.ControlTopic, 0, func(m kafka.Message) {
		if string(m.Key) == target {
			last = m
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var s DesiredState
	if err := json.Unmarshal(last.Value, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// scriptedWriter lets a test act around each write of a Plane: write
// another operator's record first or after, fail the write, or drop it.
type scriptedWriter struct {
	messageWriter
	mu     sync.Mutex
	n      int
	script func(n int, write func() error) error
}

func (w *scriptedWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	w.mu.Lock()
	n := w.n
	w.n++
	w.mu.Unlock()
	return w.script(n, func() error { return w.messageWriter.WriteMessages(ctx, msgs...) })
}

// An operator's change is reported done only if every reader accepts it,
// and a change that lost is never left to be all compaction keeps.
func TestAnOperatorIsToldWhetherTheirChangeWasAccepted(t *testing.T) {
	p, cluster := newTestPlane(t)
	other := New(cluster) // another operator's
	t.Cleanup(func() { other.Close() })
	ctx := context.Background()
	errDown := errors.New("broker unreachable")
	type rival func(version int64, paused bool) error
	cases := []struct {
		name string
		// script runs around the n-th write of alice's SetPaused(true).
		script      func(n int, write func() error, rival rival) error
		wantChanged bool
		wantErrs    []error
		// wantLast is who wrote the target's newest record after the
		// call, and after the next read.
		wantLast, wantLastAfterRead string
	}{
		{"a change another operator's came before is refused, and the winner is written again after it",
			func(n int, write func() error, rival rival) error {
				if n == 0 {
					if err := rival(2, false); err != nil {
						return err
					}
				}
				return write()
			}, false, []error{ErrConflict}, "rival", "rival"},
		{"a loser whose re-publish of the winner fails is told so, and the next read repairs it",
			func(n int, write func() error, rival rival) error {
				switch n {
				case 0:
					if err := rival(2, false); err != nil {
						return err
					}
				case 1:
					return errDown
				}
				return write()
			}, false, []error{ErrConflict, ErrUnrepaired}, "alice", "rival"},
		{"a change another operator changed again at once is still accepted",
			func(n int, write func() error, rival rival) error {
				if err := write(); err != nil {
					return err
				}
				if n == 0 {
					return rival(3, true)
				}
				return nil
			}, true, nil, "rival", "rival"},
		{"a change that never reaches the topic is not reported done",
			func(n int, write func() error, rival rival) error { return nil }, false, []error{ErrNotAccepted}, "setup", "setup"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			target := "t" + testenv.ID()
			if err := p.Publish(ctx, target, DesiredState{Version: 1, By: "setup", Write: "setup" + testenv.ID()}); err != nil {
				t.Fatal(err)
			}
			w := &scriptedWriter{messageWriter: p.control}
			w.script = func(n int, write func() error) error {
				return c.script(n, write, func(version int64, paused bool) error {
					return other.Publish(ctx, target, DesiredState{Version: version, Paused: paused, By: "rival", Write: "rival" + testenv.ID()})
				})
			}
			p.control = w
			changed, err := p.SetPaused(ctx, target, true, "alice")
			p.control = w.messageWriter
			if changed != c.wantChanged {
				t.Errorf("changed %v, want %v (err %v)", changed, c.wantChanged, err)
			}
			for _, want := range c.wantErrs {
				if !errors.Is(err, want) {
					t.Errorf("err %v, want %v", err, want)
				}
			}
			if c.wantErrs == nil && err != nil {
				t.Errorf("err %v, want none", err)
			}
			if last := lastRecord(t, p, target); last.By != c.wantLast {
				t.Errorf("after the call the newest record is by %s, want %s", last.By, c.wantLast)
			}
			states, err := p.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			last := lastRecord(t, p, target)
			if last.By != c.wantLastAfterRead || last.By != states[target].By || last.Paused != states[target].Paused {
				t.Errorf("after the next read the newest record is by %s (paused %v); accepted: by %s (paused %v), want by %s",
					last.By, last.Paused, states[target].By, states[target].Paused, c.wantLastAfterRead)
			}
		})
	}
}

// One host issuing commands faster than its clock ticks, or whose clock
// stepped back, still issues ids in order.
func TestCommandIDsFollowTheLastOneWhateverTheLocalClock(t *testing.T) {
	p, cluster := newTestPlane(t)
	ctx := context.Background()
	topic := testenv.Topic(t, cluster, 1)
	publishEvents(t, cluster, topic, 0, 1)
	base := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	cases := []struct {
		name  string
		clock []time.Time // the local clock at each command
	}{
		{"commands issued while the clock stands still sort in the order issued", []time.Time{base, base, base}},
		{"a command issued after the clock stepped back a day sorts after the one before", []time.Time{base, base.Add(-24 * time.Hour)}},
		{"a command issued after the clock moved on takes the clock's time", []time.Time{base, base.Add(time.Second)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			target := "t" + testenv.ID()
			var last string
			for i, now := range c.clock {
				p.now = func() time.Time { return now }
				rw, err := p.IssueRewind(ctx, target, topic, RewindRequest{ToOffset: "earliest"}, "ops")
				if err != nil {
					t.Fatal(err)
				}
				if rw.ID <= last || (last != "" && len(rw.ID) != len(last)) {
					t.Fatalf("command %d: id %s does not sort after %s", i, rw.ID, last)
				}
				if at, _ := idTime(rw.ID); now.After(at) {
					t.Errorf("command %d: id %s is before the local clock %s", i, rw.ID, now)
				}
				last = rw.ID
			}
			p.now = time.Now
		})
	}
}
