package consumer

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/sluicehq/sluice/control"
)

// reporter publishes this replica's status to sluice.status: every
// StatusInterval, at once on every change of its breaker or desired state,
// and a tombstone when the replica stops. Safe for concurrent use.
type reporter struct {
	a       *Applier
	started time.Time
	kick    chan struct{}

	mu          sync.Mutex
	lastError   string
	lastErrorAt time.Time
}

func newReporter(a *Applier) *reporter {
	return &reporter{a: a, started: a.cfg.now(), kick: make(chan struct{}, 1)}
}

// changed asks for a report now, without waiting for it.
func (r *reporter) changed() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// failed records the last failure to apply to (or reach) the target.
func (r *reporter) failed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastError, r.lastErrorAt = err.Error(), r.a.cfg.now()
}

// succeeded clears the last failure: the target works again.
func (r *reporter) succeeded() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastError, r.lastErrorAt = "", time.Time{}
}

// status is the report as of now.
func (r *reporter) status() control.ApplierStatus {
	a := r.a
	desired, _ := a.ctrl.get()
	parts := a.partitions.snapshot()
	ids := make([]int, 0, len(parts))
	var ahead []int
	for id, st := range parts {
		ids = append(ids, id)
		if st.ahead.Load() {
			ahead = append(ahead, id)
		}
	}
	sort.Ints(ids)
	sort.Ints(ahead)
	s := control.ApplierStatus{
		Target: a.cfg.Target, Replica: a.cfg.Replica, Breaker: a.breaker.State().String(),
		Paused: desired.Paused, Partitions: ids, StartedAt: r.started, UpdatedAt: a.cfg.now().UTC(),
		Every: a.cfg.StatusInterval, BatchLimit: a.limit.get(), AheadOfLog: ahead,
		Projections: a.projStats.snapshot(a.projections.Names()),
	}
	s.BlockerPolicy, s.BlockerPolicyCannotAct, s.Blockers = a.blockers.describe()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastError != "" {
		at := r.lastErrorAt.UTC()
		s.LastError, s.LastErrorAt = r.lastError, &at
	}
	return s
}

// run reports until ctx ends, then writes the replica's tombstone. A report
// that cannot be written (Kafka down) is dropped: the next one replaces it,
// and readers see the replica go stale meanwhile.
func (r *reporter) run(ctx context.Context) {
	t := time.NewTicker(r.a.cfg.StatusInterval)
	defer t.Stop()
	for {
		wctx, cancel := context.WithTimeout(ctx, r.a.cfg.StatusInterval)
		if err := r.a.plane.PublishStatus(wctx, r.status()); err != nil && ctx.Err() == nil {
			r.a.log.Debug("status not published", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.a.cfg.StatusInterval)
			_ = r.a.plane.ForgetStatus(fctx, r.a.cfg.Target, r.a.cfg.Replica)
			cancel()
			return
		case <-t.C:
		case <-r.kick:
		}
	}
}
