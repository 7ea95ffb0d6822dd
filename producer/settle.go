package producer

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/segmentio/kafka-go"
)

// unsettled tracks the partition keys of writes that were answered before
// Kafka settled them: a write whose deadline passed is still in kafka-go's
// queue, and may be appended later. A later request with one of those keys
// waits until they settle, so that the older event can never land after
// the newer one and win "last by offset" (a client that got 503 for v2 and
// went on to v3 would otherwise see v2 applied last). Writes that settled
// in time, the usual case, cost one atomic load. Safe for concurrent use.
type unsettled struct {
	n     atomic.Int64 // writes pending past their answer
	mu    sync.Mutex
	byKey map[string]chan struct{} // closed when the write settles
}

func newUnsettled() *unsettled { return &unsettled{byKey: map[string]chan struct{}{}} }

// mark records keys as held by a pending write and returns the function
// that releases them once it settles.
func (u *unsettled) mark(keys []string) (settled func()) {
	done := make(chan struct{})
	u.mu.Lock()
	for _, k := range keys {
		u.byKey[k] = done // a later mark of the same key waited for this one first
	}
	u.mu.Unlock()
	u.n.Add(1)
	return func() {
		u.mu.Lock()
		for _, k := range keys {
			if u.byKey[k] == done {
				delete(u.byKey, k)
			}
		}
		u.mu.Unlock()
		u.n.Add(-1)
		close(done)
	}
}

// wait returns once no pending write holds the key of one of msgs, or
// with ctx's error.
func (u *unsettled) wait(ctx context.Context, msgs []kafka.Message) error {
	for u.n.Load() > 0 {
		var pending chan struct{}
		u.mu.Lock()
		for _, m := range msgs {
			if ch, ok := u.byKey[string(m.Key)]; ok {
				pending = ch
				break
			}
		}
		u.mu.Unlock()
		if pending == nil {
			return nil
		}
		select {
		case <-pending:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
