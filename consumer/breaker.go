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

// breaker guards one target. gobreaker decides when to trip (consecutive
// retryable failures; permanent data errors count as successes, since the DLQ
// handles them; cancellations are excluded) and lets one probe through when
// half-open. On top of it, the time spent open grows with each consecutive
// opening — jittered, doubling from minOpen up to maxOpen — so a database
// that stays sick is probed less and less often, and replicas drift apart.
// Safe for concurrent use.
type breaker struct {
	cb               *gobreaker.CircuitBreaker[struct{}]
	now              func() time.Time
	minOpen, maxOpen time.Duration
	onChange         func(from, to BreakerState)
	mu               sync.Mutex
	state            BreakerState
	consecutiveOpens int
	openUntil        time.Time
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
	b := &breaker{
		now: c.now, minOpen: c.minOpen, maxOpen: c.maxOpen,
		onChange: c.onChange, changed: make(chan struct{}),
	}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        c.name,
		MaxRequests: 1, // one probe batch when half-open
		// gobreaker's own open period is kept to a token: the open period
		// that counts is ours (openUntil), which grows between openings.
		Timeout: time.Millisecond,
		ReadyToTrip: func(counts gobreaker.Counts) bool {
			return counts.ConsecutiveFailures >= c.tripAfter
		},
		IsSuccessful: func(err error) bool { return err == nil || targetdb.Classify(err) == targetdb.Permanent },
		IsExcluded:   func(err error) bool { return isShutdown(err) || errors.Is(err, targetdb.ErrOffsetsMoved) },
		OnStateChange: func(_ string, _, to gobreaker.State) {
			b.gobreakerChanged(to)
		},
	})
	return b
}

// gobreakerChanged runs under gobreaker's lock, on its transitions.
func (b *breaker) gobreakerChanged(to gobreaker.State) {
	b.mu.Lock()
	from := b.state
	switch to {
	case gobreaker.StateOpen:
		b.consecutiveOpens++
		d := b.minOpen << min(b.consecutiveOpens-1, 30)
		if d <= 0 || d > b.maxOpen {
			d = b.maxOpen
		}
		d = d/2 + rand.N(d/2+1)
		b.openUntil = b.now().Add(d)
		b.state = BreakerOpen
	case gobreaker.StateHalfOpen:
		// gobreaker's token period ends a millisecond after it opens, and
		// a batch admitted before the opening that fails after that moves
		// it to half-open. Ours decides: until openUntil it stays open, and
		// openFor moves it to half-open when the period ends.
		if b.state != BreakerOpen || !b.now().Before(b.openUntil) {
			b.state = BreakerHalfOpen
		}
	case gobreaker.StateClosed:
		b.consecutiveOpens = 0
		b.openUntil = time.Time{}
		b.state = BreakerClosed
	}
	to2 := b.state
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
	if b.onChange != nil && from != to2 {
		b.onChange(from, to2)
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
	if d := b.openUntil.Sub(b.now()); d > 0 {
		defer b.mu.Unlock()
		return d, b.changed
	}
	b.state = BreakerHalfOpen
	close(b.changed)
	b.changed = make(chan struct{})
	changed := b.changed
	b.mu.Unlock()
	if b.onChange != nil {
		b.onChange(BreakerOpen, BreakerHalfOpen)
	}
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

// do runs fn through the breaker. While our open period lasts, and when
// the half-open probe is taken, it returns errBreakerBusy without calling fn.
func (b *breaker) do(fn func() error) error {
	if d, _ := b.openFor(); d > 0 {
		return errBreakerBusy
	}
	_, err := b.cb.Execute(func() (struct{}, error) { return struct{}{}, fn() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return errBreakerBusy
	}
	return err
}

// isShutdown reports errors that mean "we are stopping" — our context
// cancelled, or the consumer generation ended (kafka-go's worker context
// reports kafka.ErrGenerationEnded, not context.Canceled) — which must
// neither trip a breaker nor be logged as faults.
func isShutdown(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, kafka.ErrGenerationEnded)
}
