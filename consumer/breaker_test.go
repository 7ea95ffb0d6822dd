package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/targetdb"
)

// fakeClock is moved by the test instead of sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var errLocked = &pgconn.PgError{Code: "55P03", Message: "lock not available"}

func newTestBreaker(clock *fakeClock) (*breaker, *[]BreakerState) {
	var seen []BreakerState
	var mu sync.Mutex
	b := newBreaker(breakerConfig{
		name: "t", tripAfter: 3, minOpen: time.Second, maxOpen: 8 * time.Second, now: clock.now,
		onChange: func(_, to BreakerState) { mu.Lock(); seen = append(seen, to); mu.Unlock() },
	})
	return b, &seen
}

// expire moves the clock past the open period: the breaker reads no
// other clock.
func expire(clock *fakeClock, b *breaker) {
	d, _ := b.openFor()
	clock.advance(d)
}

func TestBreakerTripsAfterConsecutiveRetryableFailures(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0)}
	b, seen := newTestBreaker(clock)
	for i := range 2 {
		if err := b.do(func() error { return errLocked }); !errors.Is(err, errLocked) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if b.State() != BreakerClosed {
		t.Fatalf("opened after 2 failures; it trips after 3")
	}
	_ = b.do(func() error { return errLocked })
	if b.State() != BreakerOpen {
		t.Fatalf("state %v after 3 failures, want open", b.State())
	}
	called := false
	if err := b.do(func() error { called = true; return nil }); !errors.Is(err, errBreakerBusy) || called {
		t.Fatalf("an open breaker let a batch through (err %v)", err)
	}
	if len(*seen) != 1 || (*seen)[0] != BreakerOpen {
		t.Fatalf("state changes %v", *seen)
	}
}

func TestPermanentErrorsAndCancellationsDoNotTrip(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0)}
	b, _ := newTestBreaker(clock)
	poison := &pgconn.PgError{Code: "23514", Message: "check violation"}
	for range 10 {
		_ = b.do(func() error { return poison })
		_ = b.do(func() error { return context.Canceled })
		_ = b.do(func() error { return fmt.Errorf("read offsets: %w", kafka.ErrGenerationEnded) })
	}
	if b.State() != BreakerClosed {
		t.Fatalf("state %v: poison events and shutdowns must not trip the breaker", b.State())
	}
}

func TestHalfOpenLetsOneProbeThrough(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0)}
	b, _ := newTestBreaker(clock)
	for range 3 {
		_ = b.do(func() error { return errLocked })
	}
	expire(clock, b)

	probing := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- b.do(func() error { close(probing); <-release; return nil })
	}()
	<-probing
	if b.State() != BreakerHalfOpen {
		t.Fatalf("state %v during the probe, want half-open", b.State())
	}
	if err := b.do(func() error { t.Error("a second batch ran during the probe"); return nil }); !errors.Is(err, errBreakerBusy) {
		t.Fatalf("second caller during the probe: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b.State() != BreakerClosed {
		t.Fatalf("state %v after a good probe, want closed", b.State())
	}
}

func TestOpenPeriodsGrowWithJitterUpToTheCap(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0)}
	b, _ := newTestBreaker(clock)
	for range 3 {
		_ = b.do(func() error { return errLocked })
	}
	want := time.Second
	for opening := 1; opening <= 6; opening++ {
		d, _ := b.openFor()
		if d < want/2 || d > want {
			t.Fatalf("opening %d: open for %v, want within [%v, %v]", opening, d, want/2, want)
		}
		expire(clock, b)
		// The probe fails: straight back to open, for longer.
		_ = b.do(func() error { return errLocked })
		if b.State() != BreakerOpen {
			t.Fatalf("a failed probe left the breaker %v", b.State())
		}
		want = min(want*2, 8*time.Second)
	}
	// A good probe closes it and the next opening starts small again.
	expire(clock, b)
	if err := b.do(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_ = b.do(func() error { return errLocked })
	}
	if d, _ := b.openFor(); d > time.Second {
		t.Fatalf("after closing, the next opening lasts %v; want the minimum again", d)
	}
}

func TestWaitReturnsWhenTheOpenPeriodEnds(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0)}
	b, _ := newTestBreaker(clock)
	if !b.wait(context.Background(), func() { t.Fatal("waited on a closed breaker") }) {
		t.Fatal("wait on a closed breaker failed")
	}
	for range 3 {
		_ = b.do(func() error { return errLocked })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	dropped := false
	if b.wait(ctx, func() { dropped = true }) {
		t.Fatal("wait returned while open")
	}
	if !dropped {
		t.Fatal("wait did not let the worker drop its reader before waiting")
	}
}

// TestBatchesInFlightWhenItOpensDoNotCutTheOpenPeriodShort replays a frozen
// or locked database: every worker's batch fails at about the same moment,
// so some fail after the breaker has opened. Their failures belong to the
// period before it opened; they must neither end the open period nor let a
// probe through before it ends.
func TestBatchesInFlightWhenItOpensDoNotCutTheOpenPeriodShort(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0)}
	b, seen := newTestBreaker(clock)
	const workers = 6
	started := make(chan struct{})
	fail := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			_ = b.do(func() error { started <- struct{}{}; <-fail[i%2]; return errLocked })
		})
	}
	for range workers {
		<-started
	}
	close(fail[0]) // three fail and open it,
	for b.State() != BreakerOpen {
		time.Sleep(time.Millisecond)
	}
	// Then the other three, admitted before it opened, fail.
	close(fail[1])
	wg.Wait()
	if got := b.State(); got != BreakerOpen {
		t.Fatalf("state %v after %d batches admitted before it opened failed, want open", got, workers)
	}
	if err := b.do(func() error { t.Error("a probe ran before the open period ended"); return nil }); !errors.Is(err, errBreakerBusy) {
		t.Fatalf("a call during the open period: %v", err)
	}
	if d, _ := b.openFor(); d < 500*time.Millisecond {
		t.Fatalf("open for %v more; the first opening lasts at least half a second", d)
	}
	expire(clock, b)
	probing, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() { done <- b.do(func() error { close(probing); <-release; return nil }) }()
	<-probing
	if got := b.State(); got != BreakerHalfOpen {
		t.Fatalf("state %v during the probe, want half-open", got)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []BreakerState{BreakerOpen, BreakerHalfOpen, BreakerClosed}
	if fmt.Sprint(*seen) != fmt.Sprint(want) {
		t.Fatalf("state changes %v, want %v", *seen, want)
	}
}

// TestBreakerSteps drives the breaker one call or one move of the clock at
// a time: it reads no other clock, so nothing here sleeps. The test
// breaker trips after 3 failures and opens for [0.5s, 1s] at first, twice
// that at each consecutive opening.
func TestBreakerSteps(t *testing.T) {
	type step struct {
		call string        // "fail", "ok", "poison", "cancelled", "moved"; "" moves the clock by wait
		wait time.Duration // how far the clock moves
		ran  bool          // whether the call got through (false: refused, busy)
		want BreakerState
	}
	fail := func(ran bool, want BreakerState) step { return step{call: "fail", ran: ran, want: want} }
	call := func(c string, ran bool, want BreakerState) step { return step{call: c, ran: ran, want: want} }
	wait := func(d time.Duration, want BreakerState) step { return step{wait: d, want: want} }
	trip := []step{fail(true, BreakerClosed), fail(true, BreakerClosed), fail(true, BreakerOpen)}
	cases := []struct {
		name  string
		steps []step
		seen  []BreakerState
	}{
		{"three consecutive failures open it, and a success in between starts the count again",
			[]step{fail(true, BreakerClosed), fail(true, BreakerClosed), call("ok", true, BreakerClosed),
				fail(true, BreakerClosed), fail(true, BreakerClosed), fail(true, BreakerOpen)},
			[]BreakerState{BreakerOpen}},
		{"permanent errors count as successes, and shutdowns and moved offsets count for nothing",
			[]step{fail(true, BreakerClosed), fail(true, BreakerClosed), call("poison", true, BreakerClosed),
				fail(true, BreakerClosed), call("cancelled", true, BreakerClosed), call("moved", true, BreakerClosed),
				fail(true, BreakerClosed), call("ok", true, BreakerClosed)},
			nil},
		{"it refuses every call until the clock passes its open period, then one probe closes it",
			append(trip[:3:3], call("ok", false, BreakerOpen), wait(499*time.Millisecond, BreakerOpen),
				call("ok", false, BreakerOpen), wait(501*time.Millisecond, BreakerHalfOpen), call("ok", true, BreakerClosed)),
			[]BreakerState{BreakerOpen, BreakerHalfOpen, BreakerClosed}},
		{"a failed probe opens it again for longer",
			append(trip[:3:3], wait(time.Second, BreakerHalfOpen), fail(true, BreakerOpen),
				wait(999*time.Millisecond, BreakerOpen), call("ok", false, BreakerOpen),
				wait(1001*time.Millisecond, BreakerHalfOpen), call("ok", true, BreakerClosed)),
			[]BreakerState{BreakerOpen, BreakerHalfOpen, BreakerOpen, BreakerHalfOpen, BreakerClosed}},
		{"a cancelled probe proves nothing, and the next caller probes",
			append(trip[:3:3], wait(time.Second, BreakerHalfOpen), call("cancelled", true, BreakerHalfOpen),
				call("ok", true, BreakerClosed)),
			[]BreakerState{BreakerOpen, BreakerHalfOpen, BreakerClosed}},
		{"once closed, the next opening is short again",
			append(append(trip[:3:3], wait(time.Second, BreakerHalfOpen), fail(true, BreakerOpen),
				wait(2*time.Second, BreakerHalfOpen), call("ok", true, BreakerClosed)), append(trip[:3:3],
				wait(time.Second, BreakerHalfOpen), call("ok", true, BreakerClosed))...),
			[]BreakerState{BreakerOpen, BreakerHalfOpen, BreakerOpen, BreakerHalfOpen, BreakerClosed,
				BreakerOpen, BreakerHalfOpen, BreakerClosed}},
	}
	errs := map[string]error{
		"fail": errLocked, "ok": nil, "poison": &pgconn.PgError{Code: "23514"}, "cancelled": context.Canceled,
		"moved": fmt.Errorf("apply: %w", targetdb.ErrOffsetsMoved),
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(0, 0)}
			b, seen := newTestBreaker(clock)
			for i, s := range c.steps {
				if s.call == "" {
					clock.advance(s.wait)
					_, _ = b.openFor() // as a waiting worker looks
				} else {
					ran := false
					err := b.do(func() error { ran = true; return errs[s.call] })
					if ran != s.ran || !ran && !errors.Is(err, errBreakerBusy) {
						t.Fatalf("step %d (%s): ran %v (err %v), want ran %v", i, s.call, ran, err, s.ran)
					}
				}
				if got := b.State(); got != s.want {
					t.Fatalf("step %d (%s %v): state %v, want %v", i, s.call, s.wait, got, s.want)
				}
			}
			if fmt.Sprint(*seen) != fmt.Sprint(c.seen) {
				t.Fatalf("state changes %v, want %v", *seen, c.seen)
			}
		})
	}
}
