package consumer

import (
	"log/slog"
	"testing"
	"time"
)

func TestAPositionBeyondTheLogEndIsSuspectBeforeItIsAhead(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	a := &Applier{cfg: Config{now: clock.now, aheadGrace: 10 * time.Second}, log: slog.New(slog.DiscardHandler)}
	a.report = &reporter{a: a, kick: make(chan struct{}, 1)}
	st := &partitionState{}
	steps := []struct {
		name      string
		advance   time.Duration
		next, end int64
		wantAhead bool
		wantHold  bool
	}{
		{"a position within the log is fine", 0, 100, 120, false, false},
		{"beyond the end it is suspect: the worker holds", 0, 100, 90, false, true},
		{"a log end that catches up (a broker restart) ends the suspicion", time.Second, 100, 100, false, false},
		{"beyond the end again", time.Second, 100, 90, false, true},
		{"still within the grace", 9 * time.Second, 100, 90, false, true},
		{"past the grace it is ahead", 2 * time.Second, 100, 90, true, true},
		{"the new log growing past the position does not clear it", time.Second, 100, 500, true, true},
		{"an operator moving the position does", time.Second, 0, 500, false, false},
	}
	for _, s := range steps {
		clock.advance(s.advance)
		got := a.checkAhead(st, 0, s.next, s.end)
		hold := st.ahead.Load() || st.suspectSince.Load() != 0
		if got != s.wantAhead || hold != s.wantHold {
			t.Fatalf("%s: ahead %v hold %v, want %v %v", s.name, got, hold, s.wantAhead, s.wantHold)
		}
	}
	if !st.reverify.Load() {
		t.Error("a suspect position did not ask the worker to check the log's fingerprint")
	}
}
