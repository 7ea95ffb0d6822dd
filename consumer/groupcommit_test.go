package consumer

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"testing"
)

type recordingCommitter struct {
	mu      sync.Mutex
	commits []map[string]map[int]int64
}

func (r *recordingCommitter) CommitOffsets(m map[string]map[int]int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commits = append(r.commits, m)
	return nil
}

// TestGroupCommitsCoalesceAndFlushWhenTheGenerationEnds: workers' commits
// never wait on the broker; each flush sends the latest offset of every
// partition once, and the generation's end flushes what is left.
func TestGroupCommitsCoalesceAndFlushWhenTheGenerationEnds(t *testing.T) {
	rec := &recordingCommitter{}
	c := newGroupCommits(rec, slog.New(slog.DiscardHandler))
	for next := int64(1); next <= 100; next++ {
		_ = c.CommitOffsets(map[string]map[int]int64{"events": {0: next, 1: 2 * next}})
	}
	c.flush()
	c.flush() // nothing new: no request
	_ = c.CommitOffsets(map[string]map[int]int64{"events": {2: 7}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.run(ctx) // returns at once, after a last flush
	want := []map[string]map[int]int64{{"events": {0: 100, 1: 200}}, {"events": {2: 7}}}
	if len(rec.commits) != len(want) {
		t.Fatalf("%d commits %v, want %v", len(rec.commits), rec.commits, want)
	}
	for i := range want {
		if !maps.Equal(rec.commits[i]["events"], want[i]["events"]) {
			t.Errorf("commit %d: %v, want %v", i, rec.commits[i], want[i])
		}
	}
}
