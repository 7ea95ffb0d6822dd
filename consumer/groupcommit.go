package consumer

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// groupCommitInterval is how often a generation's group offsets are
// committed. They are for visibility only (lag, `ctl status`, a target
// that never applied a partition): the target's offsets row, written with
// the rows, is what a worker resumes from.
const groupCommitInterval = time.Second

// groupCommits takes the partition workers' group-offset commits without
// waiting on the broker, and commits the latest of each partition once per
// groupCommitInterval and when the generation ends: one request a second
// instead of one per batch on every worker's path.
type groupCommits struct {
	gen offsetCommitter
	log *slog.Logger

	mu      sync.Mutex
	pending map[string]map[int]int64
}

func newGroupCommits(gen offsetCommitter, log *slog.Logger) *groupCommits {
	return &groupCommits{gen: gen, log: log}
}

// CommitOffsets records offsets to be committed; it never blocks on the
// broker and never fails.
func (c *groupCommits) CommitOffsets(offsets map[string]map[int]int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		c.pending = map[string]map[int]int64{}
	}
	for topic, parts := range offsets {
		if c.pending[topic] == nil {
			c.pending[topic] = map[int]int64{}
		}
		for p, next := range parts {
			c.pending[topic][p] = next
		}
	}
	return nil
}

// run commits until the generation ends, then once more: the generation is
// still the group's until every one of its goroutines has returned.
func (c *groupCommits) run(ctx context.Context) {
	tick := time.NewTicker(groupCommitInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.flush()
			return
		case <-tick.C:
			c.flush()
		}
	}
}

func (c *groupCommits) flush() {
	c.mu.Lock()
	offsets := c.pending
	c.pending = nil
	c.mu.Unlock()
	if offsets == nil {
		return
	}
	if err := c.gen.CommitOffsets(offsets); err != nil {
		c.log.Debug("group offsets not committed (the target has them)", "offsets", offsets, "err", err)
	}
}
