package consumer

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluicehq/sluice/internal/targetdb"
)

// TestTheBlockerPolicysGuardRails: only a session idle in its transaction
// for the bound, not sluice's, not waiting itself, not a superuser's unless
// allowed, and within the allow-lists may be ended.
func TestTheBlockerPolicysGuardRails(t *testing.T) {
	now := time.Date(2025, 5, 9, 14, 24, 0, 0, time.UTC)
	stale := targetdb.Blocker{PID: 7039, User: "app", Application: "ingest-worker", State: "idle in transaction",
		StateChange: now.Add(-90 * time.Second), XactStart: now.Add(-10 * time.Minute), Now: now}
	with := func(f func(*targetdb.Blocker)) targetdb.Blocker { b := stale; f(&b); return b }
	policy := BlockerPolicy{After: time.Minute, Terminate: true}
	for _, c := range []struct {
		name   string
		policy BlockerPolicy
		b      targetdb.Blocker
		want   string // "" when it may be ended, else part of why not
	}{
		{"the report's stale transaction", policy, stale, ""},
		{"aborted and idle", policy, with(func(b *targetdb.Blocker) { b.State = "idle in transaction (aborted)" }), ""},
		{"an active query", policy, with(func(b *targetdb.Blocker) { b.State = "active" }), "it is active"},
		{"idle, no transaction", policy, with(func(b *targetdb.Blocker) { b.State = "idle" }), "it is idle"},
		{"waiting for a lock itself", policy, with(func(b *targetdb.Blocker) { b.WaitsForLock = true }), "waits for a lock itself"},
		{"idle for less than the bound", policy, with(func(b *targetdb.Blocker) { b.StateChange = now.Add(-59 * time.Second) }), "less than 1m0s"},
		{"sluice's own", policy, with(func(b *targetdb.Blocker) { b.Application = "sluice-backfill" }), "sluice's own"},
		{"a superuser's", policy, with(func(b *targetdb.Blocker) { b.Superuser = true }), "superuser"},
		{"a superuser's, allowed", BlockerPolicy{After: time.Minute, AllowSuperusers: true}, with(func(b *targetdb.Blocker) { b.Superuser = true }), ""},
		{"a user outside the list", BlockerPolicy{After: time.Minute, Users: []string{"etl"}}, stale, `user "app"`},
		{"a user in the list", BlockerPolicy{After: time.Minute, Users: []string{"etl", "app"}}, stale, ""},
		{"an application outside the list", BlockerPolicy{After: time.Minute, Applications: []string{"psql"}}, stale, `application "ingest-worker"`},
	} {
		ok, why := c.policy.verdict(c.b)
		if ok != (c.want == "") || !strings.Contains(why, c.want) {
			t.Errorf("%s: verdict %v %q, want %v containing %q", c.name, ok, why, c.want == "", c.want)
		}
	}
}

// TestTheStallClockStartsAtTheFirstLockWaitAndStopsAtASuccess.
func TestTheStallClockStartsAtTheFirstLockWaitAndStopsAtASuccess(t *testing.T) {
	var c stallClock
	t0 := time.Unix(1_700_000_000, 0)
	c.failed(errors.New("connection refused"), t0)
	if d := c.stalledFor(t0.Add(time.Minute)); d != 0 {
		t.Fatalf("a failure that is not a lock wait started the clock: %v", d)
	}
	c.failed(&pgconn.PgError{Code: "55P03"}, t0)
	c.failed(&pgconn.PgError{Code: "55P03"}, t0.Add(5*time.Second)) // later attempts keep the start
	if d := c.stalledFor(t0.Add(time.Minute)); d != time.Minute {
		t.Fatalf("stalled for %v, want 1m from the first lock wait", d)
	}
	c.applied()
	if d := c.stalledFor(t0.Add(2 * time.Minute)); d != 0 {
		t.Fatalf("a success did not stop the clock: %v", d)
	}
}
