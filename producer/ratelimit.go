package producer

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keyLimits holds one token bucket per ingest key (by name), in events per second:
// one noisy publisher slows down alone instead of filling Kafka's disks.
type keyLimits struct {
	perSecond float64
	burst     int
	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
}

func newKeyLimits(perSecond float64, burst int) *keyLimits {
	if perSecond <= 0 {
		return nil // unlimited
	}
	return &keyLimits{perSecond: perSecond, burst: burst, buckets: map[string]*rate.Limiter{}}
}

// take asks for n events' worth of the key's bucket at now. It returns 0
// when granted, else how long the client should wait before retrying
// (nothing is taken then).
func (l *keyLimits) take(key string, n int, now time.Time) time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	b, ok := l.buckets[key]
	if !ok {
		b = rate.NewLimiter(rate.Limit(l.perSecond), l.burst)
		l.buckets[key] = b
	}
	l.mu.Unlock()
	r := b.ReserveN(now, n)
	if !r.OK() { // n is larger than the bucket: it can never be granted at once
		return time.Duration(math.Ceil(float64(n)/l.perSecond)) * time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}
