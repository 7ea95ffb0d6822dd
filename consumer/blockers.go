package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/control"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
)

// BlockerPolicy ends a session that stalls the target by holding locks
// while it does nothing: the stale transaction of the incident, which
// someone had to find and terminate by hand. The zero value is off.
//
// A session is ended only when the target has been stalled by lock waits
// for After, the session is in the chain of lock waits holding up the
// applier, it has been idle in its transaction for After, it is not one of
// sluice's own (application name "sluice…"), it is not a superuser's
// (unless AllowSuperusers), it matches Users and Applications when they are
// given, and the target is not paused. Each transaction is dealt with once.
type BlockerPolicy struct {
	// After is the bound: 0 turns the policy off.
	After time.Duration
	// Terminate ends the session (pg_terminate_backend); false reports what
	// would be ended and ends nothing.
	Terminate bool
	// Users and Applications, when given, are the only user names and
	// application names whose sessions may be ended.
	Users        []string
	Applications []string
	// AllowSuperusers lets a superuser's session be ended too (it takes a
	// superuser applier role).
	AllowSuperusers bool
}

func (p BlockerPolicy) String() string {
	if p.After <= 0 {
		return ""
	}
	mode := "report"
	if p.Terminate {
		mode = "terminate"
	}
	return fmt.Sprintf("%s sessions idle in transaction for %v that stall the target for %v", mode, p.After, p.After)
}

// verdict says whether b may be ended, and if not, why not.
func (p BlockerPolicy) verdict(b targetdb.Blocker) (bool, string) {
	switch {
	case b.WaitsForLock:
		return false, "it waits for a lock itself"
	case !b.IdleInTransaction():
		return false, fmt.Sprintf("it is %s: only a session idle in a transaction is ended", b.State)
	case strings.HasPrefix(b.Application, "sluice"):
		return false, "it is one of sluice's own sessions"
	case b.InState() < p.After:
		return false, fmt.Sprintf("idle in its transaction for %v, less than %v", b.InState().Round(time.Second), p.After)
	case b.Superuser && !p.AllowSuperusers:
		return false, "it is a superuser's session"
	case len(p.Users) > 0 && !slices.Contains(p.Users, b.User):
		return false, fmt.Sprintf("user %q is not one of the policy's users", b.User)
	case len(p.Applications) > 0 && !slices.Contains(p.Applications, b.Application):
		return false, fmt.Sprintf("application %q is not one of the policy's applications", b.Application)
	}
	return true, ""
}

// stallClock is when the target started to stall on locks: the start of
// the first attempt since the last success that failed on a lock wait.
type stallClock struct{ since atomic.Int64 }

func (c *stallClock) failed(err error, began time.Time) {
	if targetdb.IsLockWait(err) {
		c.since.CompareAndSwap(0, began.UnixNano())
	}
}

func (c *stallClock) applied() { c.since.Store(0) }

// stalledFor is how long the target has been stalled on locks, 0 if not.
func (c *stallClock) stalledFor(now time.Time) time.Duration {
	s := c.since.Load()
	if s == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, s))
}

// blockerPoll is how often a stalled target's lock chains are looked at:
// an applier's session waits up to lock_timeout at each attempt, long
// enough to be seen.
const blockerPoll = 250 * time.Millisecond

// maxBlockerActions is how many of the policy's actions a status keeps.
const maxBlockerActions = 10

type blockerKey struct {
	pid   int
	xact  time.Time
	state time.Time
}

// blockerWatch carries out a target's BlockerPolicy on a session of its own.
type blockerWatch struct {
	a      *Applier
	policy BlockerPolicy
	stall  stallClock

	// seen holds the sessions seen holding up the applier, by pid, as of
	// the transaction they were seen in.
	seen map[int]targetdb.Blocker
	// dealt holds the transactions already ended, reported or spared.
	dealt map[blockerKey]bool

	mu      sync.Mutex
	actions []control.BlockerAction
	warning string
}

func newBlockerWatch(a *Applier, p BlockerPolicy) *blockerWatch {
	return &blockerWatch{a: a, policy: p, seen: map[int]targetdb.Blocker{}, dealt: map[blockerKey]bool{}}
}

// applied and failed feed the stall clock; nil-safe, for a policy that is off.
func (w *blockerWatch) applied() {
	if w != nil {
		w.stall.applied()
	}
}

func (w *blockerWatch) failed(err error, began time.Time) {
	if w != nil {
		w.stall.failed(err, began)
	}
}

// describe is the policy for the status, what keeps it from acting (empty
// when nothing does), and what it did.
func (w *blockerWatch) describe() (policy, cannotAct string, actions []control.BlockerAction) {
	if w == nil {
		return "", "", nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.policy.String(), w.warning, slices.Clone(w.actions)
}

// run watches until ctx ends.
func (w *blockerWatch) run(ctx context.Context) {
	if w == nil {
		return
	}
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	tick := time.NewTicker(blockerPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if conn == nil || conn.IsClosed() {
			conn = w.connect(ctx)
			if conn == nil {
				continue
			}
		}
		if err := w.check(ctx, conn); err != nil && ctx.Err() == nil {
			w.a.log.Debug("blocker policy: cannot look at the lock chains now", "err", err)
			conn.Close(context.Background())
			conn = nil
		}
	}
}

// connect opens the watch's session and, the first time, checks that the
// role may end other roles' sessions.
func (w *blockerWatch) connect(ctx context.Context) *pgx.Conn {
	s := w.a.cfg.session()
	s.ApplicationName = "sluice-blockers-" + w.a.cfg.Target
	s.ConnectTimeout = 3 * time.Second
	conn, err := targetdb.Connect(ctx, w.a.cfg.DSN, s)
	if err != nil {
		return nil
	}
	missing, role, err := targetdb.MissingRoles(ctx, conn)
	if err != nil {
		conn.Close(context.Background())
		return nil
	}
	if !w.policy.Terminate {
		missing = slices.DeleteFunc(missing, func(r string) bool { return r == "pg_signal_backend" })
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	warning := ""
	if len(missing) > 0 {
		grant := fmt.Sprintf("GRANT %s TO %s", strings.Join(missing, ", "), role)
		warning = fmt.Sprintf("role %s lacks %s: it cannot see or end other roles' sessions (%s)", role, strings.Join(missing, " and "), grant)
		if w.warning != warning {
			w.a.log.Warn("blocker policy cannot act on other roles' sessions", "role", role, "missing", missing, "fix", grant)
		}
	}
	if w.warning != warning {
		w.warning = warning
		w.a.report.changed()
	}
	return conn
}

// check looks at the lock chains while the target is stalled, and acts on
// the sessions the policy allows once the stall has lasted its bound.
func (w *blockerWatch) check(ctx context.Context, conn *pgx.Conn) error {
	desired, _ := w.a.ctrl.get()
	stalled := w.stall.stalledFor(w.a.cfg.now())
	if desired.Paused || stalled == 0 {
		clear(w.seen) // a paused target is held up by its operator, not by a lock
		return nil
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	also := make([]targetdb.Blocker, 0, len(w.seen))
	for _, b := range w.seen {
		also = append(also, b)
	}
	found, err := targetdb.BlockersOf(qctx, conn, kafkaadmin.GroupID(w.a.cfg.Target), also)
	if err != nil {
		return err
	}
	now := map[int]targetdb.Blocker{}
	for _, b := range found {
		if old, ok := w.seen[b.PID]; ok && !old.XactStart.Equal(b.XactStart) {
			continue // the transaction seen blocking has ended; this one was not seen blocking
		}
		now[b.PID] = b
	}
	w.seen = now
	if stalled < w.policy.After {
		return nil
	}
	for _, b := range w.seen {
		key := blockerKey{b.PID, b.XactStart, b.StateChange}
		if w.dealt[key] {
			continue
		}
		ok, why := w.policy.verdict(b)
		if !ok && b.IdleInTransaction() && !b.WaitsForLock && b.InState() < w.policy.After {
			continue // not yet: it may pass the bound later in this state
		}
		w.dealt[key] = true
		w.act(ctx, conn, b, ok, why, stalled)
	}
	return nil
}

func (w *blockerWatch) act(ctx context.Context, conn *pgx.Conn, b targetdb.Blocker, eligible bool, why string, stalled time.Duration) {
	action := "spared"
	switch {
	case eligible && !w.policy.Terminate:
		action, why = "reported", "report mode: it would have been ended"
	case eligible:
		ended, err := targetdb.EndBlocker(ctx, conn, b)
		switch {
		case errors.Is(err, targetdb.ErrNotPermitted):
			action, why = "not permitted", err.Error()
		case err != nil:
			action, why = "not permitted", "could not end it: "+err.Error()
			delete(w.dealt, blockerKey{b.PID, b.XactStart, b.StateChange}) // try again at the next look
		case ended:
			action = "ended"
		default:
			return // it moved on (committed, or did something) in between: nothing to do
		}
	}
	rec := control.BlockerAction{Action: action, Why: why, At: w.a.cfg.now().UTC(), PID: b.PID, User: b.User,
		Application: b.Application, Client: b.Client, State: b.State, TransactionAge: b.TransactionAge(),
		Locks: b.Locks, Query: b.Query}
	args := []any{"action", action, "pid", b.PID, "user", b.User, "application", b.Application, "client", b.Client,
		"state", b.State, "idle_for", b.InState().Round(time.Millisecond), "transaction_age", b.TransactionAge().Round(time.Millisecond),
		"locks", b.Locks, "query", b.Query, "target_stalled_for", stalled.Round(time.Millisecond)}
	if why != "" {
		args = append(args, "why", why)
	}
	switch action {
	case "ended":
		w.a.log.Warn("blocker policy ended a session that stalled the target", args...)
	case "spared":
		w.a.log.Info("blocker policy left a blocking session alone", args...)
	default:
		w.a.log.Warn("blocker policy: a session stalls the target", args...)
	}
	w.a.m.blockers.WithLabelValues(action).Inc()
	w.mu.Lock()
	w.actions = append([]control.BlockerAction{rec}, w.actions...)
	if len(w.actions) > maxBlockerActions {
		w.actions = w.actions[:maxBlockerActions]
	}
	w.mu.Unlock()
	w.a.report.changed()
}
