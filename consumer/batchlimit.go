package consumer

import (
	"sync"
	"time"
)

// batchLimit is how many records one transaction of this target may carry
// now. A database that is slow — a batch outran statement_timeout or
// ApplyTimeout — gets half as many at the next attempt, down to one; quick
// successes double it back up to BatchSize. So a target makes progress
// whenever its database can take anything at all, instead of retrying a
// batch too big for it forever. Shared by the target's partition workers
// (the database's capacity is shared too). Safe for concurrent use.
type batchLimit struct {
	mu       sync.Mutex
	n, max   int
	quick    time.Duration // a batch applied faster than this may grow the limit
	onChange func(n int)
}

func newBatchLimit(max int, quick time.Duration, onChange func(int)) *batchLimit {
	l := &batchLimit{n: max, max: max, quick: quick, onChange: onChange}
	onChange(max)
	return l
}

func (l *batchLimit) get() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// slow halves the limit after a batch of size records was too slow.
func (l *batchLimit) slow(size int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := max(min(l.n, size)/2, 1); n != l.n {
		l.n = n
		l.onChange(n)
	}
}

// applied grows the limit after a full batch applied in took.
func (l *batchLimit) applied(size int, took time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if size < l.n || took > l.quick || l.n == l.max {
		return
	}
	l.n = min(l.n*2, l.max)
	l.onChange(l.n)
}
