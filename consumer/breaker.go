package consumer

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/sony/gobreaker/v2"

	"github.com/sluicehq/sluice/internal/targetdb"
)

// BreakerState is the state of a target's breaker, as exported in
// sluice_breaker_state.
type BreakerState int

// The breaker states; the values are those of the metric.
const (
	BreakerClosed   BreakerState = 0
	BreakerHalfOpen BreakerState = 1
	BreakerOpen     BreakerState = 2
)

// String names the state.
func (s BreakerState) String() string {
	switch s {
	case BreakerHalfOpen:
		return "half-open"
	case BreakerOpen:
		return "open"
	}
	return "closed"
}

// breaker guards one target: one state machine on the injected clock.
//
// Closed, it counts through gobreaker: consecutive retryable failures trip
// it (permanent data errors count as successes, since the DLQ handles
// them; cancellations are excluded). gobreaker is only the counter — each
// closed period gets a fresh one, and what it does after tripping is never
// asked — so nothing of the breaker reads the real clock.
//
// Open, it refuses every call until its open period ends: jittered,
// doubling from minOpen up to maxOpen with each consecutive opening, so a
// database that stays sick is probed less and less often, and replicas
// drift apart. Then it is half-open: one call at a time is the probe; its
// success closes the breaker, its failure opens it again for longer, and a
// cancelled probe leaves the slot to the next caller. Calls admitted
// before it opened count for nothing when they end. Safe for concurrent use.
type breaker struct {
	c  breakerConfig
	mu sync.Mutex
	// state is the breaker's; counter counts while it is closed, and
	// counting is its generation (a counter that is not the current one
	// is ignored).
	state            BreakerState
	counter          *gobreaker.CircuitBreaker[struct{}]
	counting         uint64
	consecutiveOpens int
	openUntil        time.Time
	probing          bool          // half-open, and the probe is under way
	changed          chan struct{} // closed (and replaced) on every change
}

type breakerConfig struct {
	name             string
	tripAfter        uint32
	minOpen, maxOpen time.Duration
	now              func() time.Time
	onChange         func(from, to BreakerState)
}

func newBreaker(c breakerConfig) *breaker {
	b := &breaker{c: c, changed: make(chan struct{})}
	b.counter = b.newCounter()
	return b
}

// newCounter starts a closed period's count. Called with mu held, or
// before the breaker is shared.
func (b *breaker) newCounter() *gobreaker.CircuitBreaker[struct{}] {
	b.counting++
	counting := b.counting
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name: b.c.name,
		// A tripped counter is dropped; its own open period (on the real
		// clock) must never end while a late call still reaches it.
		Timeout: 100 * 365 * 24 * time.Hour,
		ReadyToTrip: func(counts gobreaker.Counts) bool {
			return counts.ConsecutiveFailures >= b.c.tripAfter
		},
		IsSuccessful: isSuccessful,
		IsExcluded:   isExcluded,
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.tripped(counting)
			}
		},
	})
}

// isSuccessful: only the database's faults count against it.
func isSuccessful(err error) bool { return err == nil || targetdb.Classify(err) == targetdb.Permanent }

// isExcluded: stopping, and another writer moving the partition, say
// nothing about the database's health.
func isExcluded(err error) bool { return isShutdown(err) || errors.Is(err, targetdb.ErrOffsetsMoved) }

// tripped runs when the counter of a closed period trips (under
// gobreaker's lock: it takes only ours).
func (b *breaker) tripped(counting uint64) {
	b.mu.Lock()
	if counting != b.counting || b.state != BreakerClosed {
		b.mu.Unlock()
		return
	}
	b.open()
	b.mu.Unlock()
	b.notify(BreakerClosed, BreakerOpen)
}

// open starts an open period, longer than the last one. Called with mu held.
func (b *breaker) open() {
	b.consecutiveOpens++
	d := b.c.minOpen << min(b.consecutiveOpens-1, 30)
	if d <= 0 || d > b.c.maxOpen {
		d = b.c.maxOpen
	}
	d = d/2 + rand.N(d/2+1)
	b.openUntil = b.c.now().Add(d)
	b.state, b.probing = BreakerOpen, false
	b.signal()
}

// close ends the failures: the next opening starts short again, and a
// fresh counter counts. Called with mu held.
func (b *breaker) close() {
	b.consecutiveOpens = 0
	b.openUntil = time.Time{}
	b.state, b.probing = BreakerClosed, false
	b.counter = b.newCounter()
	b.signal()
}

// signal wakes whoever waits for a change. Called with mu held.
func (b *breaker) signal() {
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *breaker) notify(from, to BreakerState) {
	if b.c.onChange != nil && from != to {
		b.c.onChange(from, to)
	}
}

// State reports the breaker's state now.
func (b *breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// openFor reports how much longer the breaker stays open (0 when it is not).
// Once the open period has ended it turns the breaker half-open: the next
// batch is the probe.
func (b *breaker) openFor() (time.Duration, <-chan struct{}) {
	b.mu.Lock()
	if b.state != BreakerOpen {
		defer b.mu.Unlock()
		return 0, b.changed
	}
	if d := b.openUntil.Sub(b.c.now()); d > 0 {
		defer b.mu.Unlock()
		return d, b.changed
	}
	b.state = BreakerHalfOpen
	b.signal()
	changed := b.changed
	b.mu.Unlock()
	b.notify(BreakerOpen, BreakerHalfOpen)
	return 0, changed
}

// wait blocks while the breaker is open, returning false if ctx ends first.
// It reports whether it had to wait at all, so a worker knows to drop what it
// holds (its reader) before a long wait.
func (b *breaker) wait(ctx context.Context, beforeWaiting func()) bool {
	waited := false
	for {
		d, changed := b.openFor()
		if d <= 0 {
			return true
		}
		if !waited && beforeWaiting != nil {
			beforeWaiting()
		}
		waited = true
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// waitForChange blocks until the breaker changes state, at most d.
func (b *breaker) waitForChange(ctx context.Context, d time.Duration) {
	b.mu.Lock()
	changed := b.changed
	b.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-changed:
	case <-t.C:
	}
}

// do runs fn through the breaker. While the open period lasts, and while
// another caller's probe is under way, it returns errBreakerBusy without
// calling fn.
func (b *breaker) do(fn func() error) error {
	if d, _ := b.openFor(); d > 0 {
		return errBreakerBusy
	}
	b.mu.Lock()
	switch {
	case b.state == BreakerHalfOpen && b.probing:
		b.mu.Unlock()
		return errBreakerBusy
	case b.state == BreakerHalfOpen:
		b.probing = true
		b.mu.Unlock()
		return b.probe(fn)
	case b.state == BreakerOpen: // opened in between
		b.mu.Unlock()
		return errBreakerBusy
	}
	counter := b.counter
	b.mu.Unlock()
	_, err := counter.Execute(func() (struct{}, error) { return struct{}{}, fn() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return errBreakerBusy // it tripped since we looked
	}
	return err
}

// probe runs fn as the half-open breaker's one probe, and moves the
// breaker on its outcome.
func (b *breaker) probe(fn func() error) error {
	err := errProbePanicked // until fn returns: a panic is a failure
	defer func() {
		b.mu.Lock()
		if b.state != BreakerHalfOpen || !b.probing { // not ours to decide any more
			b.mu.Unlock()
			return
		}
		to := BreakerHalfOpen
		switch {
		case isExcluded(err):
			b.probing = false // it proved nothing: the next caller probes
			b.signal()
		case isSuccessful(err):
			b.close()
			to = BreakerClosed
		default:
			b.open()
			to = BreakerOpen
		}
		b.mu.Unlock()
		b.notify(BreakerHalfOpen, to)
	}()
	err = fn()
	return err
}

var errProbePanicked = errors.New("the probe panicked")

// isShutdown reports errors that mean "we are stopping" — our context
// cancelled, or the consumer generation ended (kafka-go's worker context
// reports kafka.ErrGenerationEnded, not context.Canceled) — which must
// neither trip a breaker nor be logged as faults.
func isShutdown(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, kafka.ErrGenerationEnded)
}
