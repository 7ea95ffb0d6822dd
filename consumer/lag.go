package consumer

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
)

// partitionState is what a partition worker shares with the lag monitor.
type partitionState struct {
	next atomic.Int64 // next offset to apply: everything before it is in the target
	end  atomic.Int64 // log-end offset, as last measured
	// ahead is set while the target's position lies beyond the log's end:
	// the topic was deleted and created again, or truncated. Applying from
	// there would silently skip every event of the new log up to that
	// position, so the worker stops until an operator decides.
	ahead   atomic.Bool
	aheadAt atomic.Int64 // the position at which ahead was found
	// suspectSince is when the position was first seen beyond the log end
	// (unix nanoseconds; 0 when it is not).
	suspectSince atomic.Int64
	// reverify asks the worker to check the log's fingerprint before its
	// next batch.
	reverify atomic.Bool

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
// end − next offset to apply; seconds = age of the oldest record not yet
// applied (0 when caught up). It asks the broker, not the reader, so a worker
// that is stuck — breaker open, database locked or down — still shows its
// lag grow. It runs from the applier's start: until the replica holds
// partitions of a generation, the group's commits stand in for the target's
// position, so a target that is down when its applier starts shows lag too.
func (a *Applier) monitorLag(ctx context.Context) {
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
		if time.Since(retentionRead) > retentionRefresh {
			if r, err := a.cluster.Retention(ctx, a.cfg.Topic); err == nil {
				a.m.retention.Set(r.Seconds())
				retentionRead = time.Now()
			}
		}
		parts := a.partitions.snapshot()
		for id := range known {
			if parts[id] == nil { // revoked: another replica reports it now
				a.m.forgetLag(id)
				delete(known, id)
			}
		}
		joined := a.joined.Load()
		if joined && len(parts) == 0 {
			a.m.lagSeconds.Set(0)
			continue
		}
		mctx, cancel := context.WithTimeout(ctx, a.cfg.LagInterval*3)
		var worst time.Duration
		var err error
		if joined {
			worst, err = a.lagMeter().measure(mctx, parts)
		} else {
			worst, err = a.measureGroupLag(mctx)
		}
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

// retentionRefresh is how often the events topic's retention is read again.
const retentionRefresh = time.Minute

// lagMeter measures the lag of the partitions a replica owns, and finds
// the positions that lie beyond their log's end. It reaches only what it
// is given, like the partition workers it watches, so the two can be run
// together on fakes.
type lagMeter struct {
	events     eventLog
	now        func() time.Time
	aheadGrace time.Duration
	m          *metrics
	status     statusHooks
	log        *slog.Logger
}

func (a *Applier) lagMeter() *lagMeter {
	return &lagMeter{
		events: kafkaLog{cluster: a.cluster, topic: a.cfg.Topic}, now: a.cfg.now, aheadGrace: a.cfg.aheadGrace,
		m: a.m, status: a.report, log: a.log,
	}
}

// measure measures the partitions this replica owns.
func (l *lagMeter) measure(ctx context.Context, parts map[int]*partitionState) (time.Duration, error) {
	starts, ends, err := l.events.bounds(ctx)
	if err != nil {
		return 0, err
	}
	var worst time.Duration
	ahead := 0
	defer func() { l.m.aheadOfLog.Set(float64(ahead)) }()
	for id, st := range parts {
		end, ok := ends[id]
		if !ok {
			continue
		}
		st.end.Store(end)
		next := st.next.Load()
		if l.checkAhead(st, id, next, end) {
			// The position says nothing about what is left to apply: the
			// series goes (unknown) rather than read 0, caught up;
			// sluice_target_ahead_of_log and ctl status say why.
			ahead++
			l.m.forgetLag(id)
		} else {
			l.m.setLag(id, max(end-next, 0))
		}
		if age, ok := l.oldestUnapplied(ctx, st, id, next, starts[id], end); ok {
			worst = max(worst, age)
		}
	}
	return worst, nil
}

// checkAhead follows a position that lies beyond the log end. At first it
// is only suspect: right after a broker restart the log end reported can
// lag behind for a moment. The worker holds (fetches and applies nothing)
// while it is suspect, and checks the log's fingerprint before its next
// batch once it is not. Suspect for longer than aheadGrace, it is ahead:
// the topic was recreated or truncated, and the partition stays stopped —
// even if the new log grows past the position — until an operator moves
// it. Each change is said once, loudly. It reports whether st is ahead.
func (a *Applier) checkAhead(st *partitionState, id int, next, end int64) bool {
	return a.lagMeter().checkAhead(st, id, next, end)
}

func (l *lagMeter) checkAhead(st *partitionState, id int, next, end int64) bool {
	if st.ahead.Load() {
		if next == st.aheadAt.Load() {
			return true
		}
		st.ahead.Store(false)
		l.log.Info("partition moved by an operator; it applies again", "partition", id, "position", next, "log_end", end)
		l.status.changed()
	}
	if next <= end {
		st.suspectSince.Store(0)
		return false
	}
	now := l.now()
	since := st.suspectSince.Load()
	if since == 0 {
		st.suspectSince.Store(now.UnixNano())
		st.reverify.Store(true)
		return false
	}
	if now.Sub(time.Unix(0, since)) < l.aheadGrace {
		return false
	}
	st.aheadAt.Store(next)
	st.ahead.Store(true)
	st.suspectSince.Store(0)
	l.log.Error("the target's position is beyond the end of the log: the topic was recreated or truncated; "+
		"this partition applies nothing until an operator rewinds it (sluice ctl rewind <target> --to-offset earliest)",
		"partition", id, "position", next, "log_end", end, "for", l.aheadGrace)
	l.status.changed()
	return true
}

// measureGroupLag measures the age of the oldest record the group has not
// committed, over every partition: the lag of a replica that holds no
// partitions yet because its target does not answer.
func (a *Applier) measureGroupLag(ctx context.Context) (time.Duration, error) {
	starts, ends, err := a.cluster.LogBounds(ctx, a.cfg.Topic)
	if err != nil {
		return 0, err
	}
	ids := make([]int, 0, len(ends))
	for id := range ends {
		ids = append(ids, id)
	}
	committed, err := a.cluster.GroupOffsets(ctx, a.cfg.Topic, kafkaadmin.GroupID(a.cfg.Target), ids)
	if err != nil {
		return 0, err
	}
	var worst time.Duration
	for _, id := range ids {
		next, ok := committed[id]
		if !ok || next < 0 {
			next = starts[id]
		}
		if age, ok := a.lagMeter().oldestUnapplied(ctx, nil, id, next, starts[id], ends[id]); ok {
			worst = max(worst, age)
		}
	}
	return worst, nil
}

// oldestUnapplied is the age of the record at next, or — when retention
// has already deleted it (next before the log start: those events are lost
// to this target) — of the oldest record still held, so that lag never
// drops exactly when events are being lost. st, when not nil, caches the
// timestamp.
func (l *lagMeter) oldestUnapplied(ctx context.Context, st *partitionState, id int, next, start, end int64) (time.Duration, bool) {
	if next >= end {
		return 0, true
	}
	at := max(next, start)
	if st != nil && st.stampedOffset == at {
		return l.now().Sub(st.stamp), true
	}
	ts, err := l.events.recordTime(ctx, id, at)
	if err != nil {
		return 0, false
	}
	if st != nil {
		st.stampedOffset, st.stamp = at, ts
	}
	return l.now().Sub(ts), true
}
