package consumer

import (
	"testing"
	"time"
)

func TestTheBatchLimitShrinksOnSlownessAndGrowsBack(t *testing.T) {
	var seen []int
	l := newBatchLimit(500, time.Second, func(n int) { seen = append(seen, n) })
	steps := []struct {
		name string
		do   func()
		want int
	}{
		{"it starts at BatchSize", func() {}, 500},
		{"a slow full batch halves it", func() { l.slow(500) }, 250},
		{"a slow smaller batch halves that batch's size", func() { l.slow(100) }, 50},
		{"it never goes below one", func() {
			for range 20 {
				l.slow(l.get())
			}
		}, 1},
		{"a quick full batch doubles it", func() { l.applied(1, 10*time.Millisecond) }, 2},
		{"a slow success does not grow it", func() { l.applied(2, 2*time.Second) }, 2},
		{"a partial batch does not grow it", func() { l.applied(1, time.Millisecond) }, 2},
		{"growth stops at BatchSize", func() {
			for range 20 {
				l.applied(l.get(), time.Millisecond)
			}
		}, 500},
	}
	for _, s := range steps {
		s.do()
		if got := l.get(); got != s.want {
			t.Fatalf("%s: limit %d, want %d", s.name, got, s.want)
		}
	}
	if seen[0] != 500 || seen[len(seen)-1] != 500 {
		t.Fatalf("published limits %v", seen)
	}
}
