package consumer

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/control"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
)

// partitionWorker applies one partition for one generation. It reaches
// nothing but its dependencies (workerDeps), so every transition can be
// driven by fakes as well as by Kafka and PostgreSQL.
type partitionWorker struct {
	d      *workerDeps
	gen    offsetCommitter
	id     int
	log    *slog.Logger
	st     *partitionState
	reader fetcher
	pos    int64 // offset of the next record to take from Kafka
	// rewound is the id of the last rewind applied to this partition.
	rewound string
	// applied is the position the worker knows the target holds, with the
	// timestamp of the record before it (the log's fingerprint there).
	applied targetdb.Offset
	// verified is whether the log was checked to still be the one the
	// target applied, since the current reader was made; verifiedAt when.
	verified   bool
	verifiedAt time.Time
	// expectNew: the partition's recent batches were all new, so the next
	// one is tried the cheap way first (see targetStore.apply).
	expectNew bool
}

// offsetCommitter commits group offsets: a *kafka.Generation, through
// groupCommits. Its commits are for visibility only (the target's offsets
// row is what a worker resumes from), and carry the generation id, so a
// stale one is refused.
type offsetCommitter interface {
	CommitOffsets(map[string]map[int]int64) error
}

// runPartition is one partition's worker for one generation, starting at
// the target's offsets row or, when the target never applied the partition,
// at the start of the log (groupOffset only stands in for the position in
// the lag until the target answers). It must not return before the generation ends: with
// kafka-go, one returning worker ends the generation for all.
func (a *Applier) runPartition(gctx context.Context, gen offsetCommitter, id int, groupOffset int64) {
	runPartition(gctx, a.workerDeps(), gen, id, groupOffset)
}

// runPartition is Applier.runPartition on the dependencies d: the real
// ones, or the fakes of worker_fakes_test.go.
func runPartition(gctx context.Context, d *workerDeps, gen offsetCommitter, id int, groupOffset int64) {
	ctx, cancel := context.WithCancel(gctx)
	defer cancel()
	w := &partitionWorker{d: d, gen: gen, id: id, log: d.log.With("partition", id), expectNew: true}
	groupOffset, ok := w.resolveSentinel(ctx, groupOffset)
	if !ok {
		return
	}
	// Owned, and measured, from now on: while the target cannot say where
	// it is (down, locked), the group's commit stands in for its position,
	// so lag shows instead of vanishing.
	w.st = d.partitions.add(id, groupOffset)
	d.status.changed()
	defer d.status.changed()
	defer d.partitions.remove(id)
	start, ok := w.startOffset(ctx, groupOffset)
	if !ok {
		return
	}
	w.pos = start
	w.st.next.Store(start)
	defer w.dropReader()
	w.log.Info("partition worker started", "offset", start, "last_rewind", w.rewound)
	for ctx.Err() == nil {
		desired, changed := d.desired.get()
		if desired.Paused { // no reader, no batch, no session until resumed
			w.dropReader()
			select {
			case <-ctx.Done():
			case <-changed:
			}
			continue
		}
		if cmd, forward := nextCommand(desired, w.rewound); cmd != nil {
			w.move(ctx, cmd, forward)
			continue
		}
		if w.st.ahead.Load() || w.st.suspectSince.Load() != 0 { // the log may have moved under the target
			w.dropReader()
			select {
			case <-ctx.Done():
			case <-changed:
			case <-time.After(d.cfg.LagInterval):
			}
			continue
		}
		// While the breaker is open: no fetching, no reader, no session.
		if !d.breaker.wait(ctx, w.dropReader) {
			break
		}
		// A change of the desired state interrupts fetching and retrying, and
		// so does the log moving under the target (found by the lag monitor).
		bctx, cancel := context.WithCancel(ctx)
		go func() {
			tick := time.NewTicker(d.cfg.LagInterval)
			defer tick.Stop()
			for {
				select {
				case <-changed:
					cancel()
					return
				case <-bctx.Done():
					return
				case <-tick.C:
					if w.st.ahead.Load() || w.st.suspectSince.Load() != 0 {
						cancel()
						return
					}
				}
			}
		}()
		batch := w.collect(bctx)
		if w.st.reverify.Swap(false) {
			w.verified = false
		}
		if len(batch) > 0 && (!w.verified || d.now().Sub(w.verifiedAt) >= fingerprintEvery) {
			// The first batch of every reader, and then every
			// fingerprintEvery: is this still the log the target applied?
			// (A recreated topic can have grown past the target's position
			// by now, under a reader that never stopped.)
			if w.logMoved(ctx) {
				w.st.aheadAt.Store(w.st.next.Load())
				w.st.ahead.Store(true)
				batch = nil
			}
			w.verified, w.verifiedAt = true, d.now()
		}
		if len(batch) > 0 && !w.applyWithRetry(bctx, batch) {
			// Abandoned (paused, rewound, stopping): forget what was
			// fetched past the last commit; it is fetched again later.
			w.pos = w.st.next.Load()
			w.dropReader()
		}
		cancel()
	}
}

// fingerprintEvery is how often a live reader's log is checked again to be
// the one the target applied: two small requests to Kafka per partition.
const fingerprintEvery = 30 * time.Second

// nextCommand is the operator's position command (rewind or skip) this
// partition has yet to apply: the oldest of those issued after the last it
// applied (ids sort in the order they were issued), or nil.
func nextCommand(d control.DesiredState, applied string) (cmd *control.Rewind, forward bool) {
	for _, c := range []struct {
		rw      *control.Rewind
		forward bool
	}{{d.Rewind, false}, {d.Skip, true}} {
		if c.rw != nil && c.rw.ID > applied && (cmd == nil || c.rw.ID < cmd.ID) {
			cmd, forward = c.rw, c.forward
		}
	}
	return cmd, forward
}

// move applies an operator's rewind (or, forward, skip) to the partition,
// once per command id: the id is recorded with the offset in one statement,
// so a replica that restarts (or takes the partition over) mid-command never
// applies it twice. A rewind only moves back and a skip only forward.
func (w *partitionWorker) move(ctx context.Context, cmd *control.Rewind, forward bool) {
	d := w.d
	verb := map[bool]string{false: "rewind", true: "skip"}[forward]
	offset, ok := cmd.Offsets[w.id]
	if !ok {
		w.log.Error(verb+" names no offset for this partition; ignoring it", "command", cmd.ID)
		w.rewound = cmd.ID
		return
	}
	from := w.st.next.Load()
	if !forward {
		w.expectNew = false // a rewind replays what the target holds
	}
	if (!forward && offset > from) || (forward && offset < from) {
		offset = from // never the other way: the partition stays
	}
	for attempt := 0; ctx.Err() == nil; {
		if !d.breaker.wait(ctx, w.dropReader) {
			return
		}
		var next int64
		var moved bool
		err := d.breaker.do(func() error {
			qctx, cancel := context.WithTimeout(ctx, d.cfg.ApplyTimeout)
			defer cancel()
			var err error
			next, moved, err = d.positions.recordMove(qctx, w.id, offset, cmd.ID, forward)
			return err
		})
		if errors.Is(err, errBreakerBusy) {
			d.breaker.waitForChange(ctx, time.Second)
			continue
		}
		if err != nil {
			w.log.Warn(verb+" not recorded yet; retrying", "command", cmd.ID, "err", err, "attempt", attempt)
			if !sleep(ctx, d.cfg.retry.backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		w.dropReader()
		w.pos = next
		w.st.next.Store(next)
		w.rewound = cmd.ID
		w.applied = targetdb.Offset{Next: next, Found: true} // the fingerprint there is unknown
		if w.st.ahead.Load() && next != w.st.aheadAt.Load() {
			w.st.ahead.Store(false) // the operator chose where the partition resumes
			w.log.Info("partition resumes where the operator put it", "offset", next)
		}
		_ = w.gen.CommitOffsets(map[string]map[int]int64{d.topic: {w.id: next}}) // for visibility: the target has it
		switch {
		case moved && forward && next > from:
			w.log.Warn("partition skipped forward by operator: these events will never be applied to this target",
				"skip", cmd.ID, "from", from, "to", next, "skipped", next-from)
		case moved && forward:
			w.log.Info("partition skip recorded; it was already past the skip", "skip", cmd.ID, "offset", next)
		case moved:
			w.log.Info("partition rewound", "rewind", cmd.ID, "from", from, "offset", next)
		}
		return
	}
}

// logMoved reports whether the log no longer holds, at the position the
// worker resumed from, the record the target applied last: the events topic
// was deleted and created again, or truncated. A record that retention has
// deleted, or a broker that does not answer, proves nothing either way.
func (w *partitionWorker) logMoved(ctx context.Context) bool {
	o := w.applied
	if !o.Found || o.Next <= 0 {
		return false
	}
	qctx, cancel := context.WithTimeout(ctx, kafkaadmin.RequestTimeout)
	defer cancel()
	starts, ends, err := w.d.events.bounds(qctx)
	if err != nil {
		return false
	}
	// A log that ends before the position proves nothing here (right after
	// a broker restart the end reported can lag): the lag monitor watches
	// that case over time.
	last := o.Next - 1
	if last >= ends[w.id] || last < starts[w.id] || o.LastTime.IsZero() {
		return false
	}
	ts, err := w.d.events.recordTime(qctx, w.id, last)
	if err != nil || ts.Equal(o.LastTime) {
		return false
	}
	w.log.Error("the record at the target's position is not the one it applied: the events topic was recreated; "+
		"this partition applies nothing until an operator rewinds it (sluice ctl rewind <target> --to-offset earliest)",
		"offset", last, "applied_record_time", o.LastTime, "log_record_time", ts)
	return true
}

// resolveSentinel turns kafka-go's stand-ins for "no commit yet" (FirstOffset
// −2, LastOffset −1) into the real offset of the partition's log start or
// end, asking the broker until it answers or ctx ends.
func (w *partitionWorker) resolveSentinel(ctx context.Context, offset int64) (int64, bool) {
	if offset >= 0 {
		return offset, true
	}
	for attempt := 0; ; attempt++ {
		qctx, cancel := context.WithTimeout(ctx, kafkaadmin.RequestTimeout)
		starts, ends, err := w.d.events.bounds(qctx)
		cancel()
		if err == nil {
			if offset == kafka.LastOffset {
				return ends[w.id], true
			}
			return starts[w.id], true
		}
		w.log.Warn("cannot read the partition's log bounds; retrying", "err", err, "attempt", attempt)
		if !sleep(ctx, w.d.cfg.retry.backoff(attempt)) {
			return 0, false
		}
	}
}

// startOffset is where the worker resumes: the target's own record of what it
// applied when there is one (it is written in the same transaction as the
// rows, so it is exact), else the start of the log — never the group's
// committed offset, which belongs to whatever database last had the
// target's name: a new or emptied database under that name would silently
// skip everything before it. Reading it goes through the breaker like any
// other use of the target.
func (w *partitionWorker) startOffset(ctx context.Context, groupOffset int64) (int64, bool) {
	d := w.d
	for attempt := 0; ; {
		if !d.breaker.wait(ctx, nil) {
			return 0, false
		}
		var o targetdb.Offset
		err := d.breaker.do(func() error {
			qctx, cancel := context.WithTimeout(ctx, d.cfg.ApplyTimeout)
			defer cancel()
			var err error
			o, err = d.positions.load(qctx, w.id)
			return err
		})
		switch {
		case err == nil && o.Found:
			w.rewound, w.applied = o.RewindID, o
			return o.Next, true
		case err == nil:
			// A target that never applied this partition starts at the
			// start of the log; a command issued before the target existed
			// is not for it.
			desired, _ := d.desired.get()
			for _, c := range []*control.Rewind{desired.Rewind, desired.Skip} {
				if c != nil && c.RequestedAt.Before(d.createdAt) {
					w.rewound = max(w.rewound, c.ID)
				}
			}
			start, ok := w.resolveSentinel(ctx, kafka.FirstOffset)
			if ok && groupOffset > start {
				w.log.Warn("the target has no offsets row for this partition: it starts at the start of the log, not at the consumer group's offset",
					"offset", start, "group_offset", groupOffset)
			}
			return start, ok
		case errors.Is(err, errBreakerBusy):
			d.breaker.waitForChange(ctx, time.Second)
			continue
		}
		d.status.failed(err)
		w.log.Warn("cannot read the applied offset; retrying", "err", err, "attempt", attempt)
		if !sleep(ctx, d.cfg.retry.backoff(attempt)) {
			return 0, false
		}
		attempt++
	}
}

func (w *partitionWorker) ensureReader() fetcher {
	if w.reader == nil {
		w.verified = false
		w.reader = w.d.events.newFetcher(w.id, w.log)
		if err := w.reader.SetOffset(w.pos); err != nil {
			w.log.Error("cannot seek partition", "offset", w.pos, "err", err)
		}
	}
	return w.reader
}

// dropReader closes the reader; the next fetch opens one at pos. Whatever
// it had prefetched is fetched again then.
func (w *partitionWorker) dropReader() {
	if w.reader != nil {
		_ = w.reader.Close()
		w.reader = nil
	}
}

// collect waits for one record, then gathers more until the batch is full or
// Linger has passed. When ctx ends it returns what it has, to be applied. A
// reader that hands over nothing for StallTimeout while the log has records
// past pos is rebuilt.
func (w *partitionWorker) collect(ctx context.Context) []kafka.Message {
	d := w.d
	reader := w.ensureReader()
	fctx, cancelFetch := context.WithTimeout(ctx, d.cfg.StallTimeout)
	first, err := reader.FetchMessage(fctx)
	cancelFetch()
	if err != nil {
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, context.DeadlineExceeded):
			if end := w.st.end.Load(); end > w.pos {
				w.log.Warn("reader made no progress while records wait; rebuilding it",
					"offset", w.pos, "log_end", end, "stalled_for", d.cfg.StallTimeout)
				w.dropReader()
			}
		default:
			w.log.Warn("fetch failed; rebuilding the reader", "offset", w.pos, "err", err)
			w.dropReader()
			sleep(ctx, d.cfg.retry.min)
		}
		return nil
	}
	batch := make([]kafka.Message, 1, d.cfg.BatchSize)
	batch[0] = first
	w.take(first)
	lctx, cancel := context.WithTimeout(ctx, d.cfg.Linger)
	defer cancel()
	for len(batch) < d.cfg.BatchSize {
		m, err := reader.FetchMessage(lctx)
		if err != nil {
			break
		}
		batch = append(batch, m)
		w.take(m)
	}
	return batch
}

func (w *partitionWorker) take(m kafka.Message) {
	if m.Offset > w.pos {
		// Records before m are gone from the log (retention): this target
		// will never have them. Say so loudly; it is data loss for this target.
		w.log.Error("records expired from the log before this target applied them",
			"from", w.pos, "to", m.Offset-1, "lost", m.Offset-w.pos)
	}
	w.pos = m.Offset + 1
}

// applyWithRetry applies msgs, retrying retryable failures with backoff
// until it succeeds (true) or ctx ends (false: paused, rewound or stopping;
// a transaction under way is finished first). Nothing new is fetched
// meanwhile: a sick target turns into lag, held in Kafka.
func (w *partitionWorker) applyWithRetry(ctx context.Context, msgs []kafka.Message) bool {
	d := w.d
	recs := make([]targetdb.Record, len(msgs))
	for i, m := range msgs {
		recs[i] = targetdb.Decode(m)
	}
	for attempt := 0; len(recs) > 0; {
		if !d.breaker.wait(ctx, w.dropReader) {
			w.log.Info("batch left unapplied; it will be fetched again", "offset", recs[0].Msg.Offset)
			return false
		}
		// As much of the batch as the database takes now (see batchLimit).
		chunk := recs[:min(len(recs), d.limit.get())]
		// The transaction does not take ctx's cancellation: a batch under way
		// when we are told to stop is finished, within ApplyTimeout.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.ApplyTimeout)
		began := d.now()
		prog := progress{next: w.st.next.Load(), expectNew: &w.expectNew}
		actx, span := startBatchSpan(actx, d.target, chunk)
		err := d.breaker.do(func() error { return d.applySpan(actx, chunk, &prog) })
		endBatchSpan(span, prog.done, err)
		cancel()
		took := d.now().Sub(began)
		if prog.done > 0 {
			w.st.next.Store(chunk[prog.done-1].Msg.Offset + 1)
			recs = recs[prog.done:] // what was committed is never redone
		}
		if err == nil {
			d.status.succeeded()
			d.stalls.applied()
			d.m.batchDuration.Observe(took.Seconds())
			d.limit.applied(len(chunk), took)
			w.afterCommit(chunk[len(chunk)-1].Msg)
			attempt = 0
			continue
		}
		if errors.Is(err, targetdb.ErrOffsetsMoved) {
			// Someone else moved the partition under us: an owner of a newer
			// generation, or an operator. Nothing of the span was written;
			// take up the target's position and drop the batch.
			w.log.Warn("offsets moved by another writer; taking up the target's position", "err", err)
			w.reloadPosition(ctx)
			return false
		}
		if errors.Is(err, errBreakerBusy) { // not an attempt: wait for the probe or the open period
			d.breaker.waitForChange(ctx, time.Second)
			if ctx.Err() != nil {
				return false
			}
			continue
		}
		d.m.batchDuration.Observe(took.Seconds())
		class := targetdb.Classify(err)
		d.m.failed(class)
		d.status.failed(err)
		d.stalls.failed(err, began)
		if targetdb.IsSlow(err) {
			d.limit.slow(len(chunk))
		}
		w.log.Warn("apply failed; batch kept for retry", "offset", recs[0].Msg.Offset, "records", len(chunk),
			"class", class.String(), "attempt", attempt, "breaker", d.breaker.State().String(),
			"batch_limit", d.limit.get(), "err", err)
		if ctx.Err() != nil || !sleep(ctx, d.cfg.retry.backoff(attempt)) {
			w.log.Info("batch left unapplied; it will be fetched again", "offset", recs[0].Msg.Offset)
			return false
		}
		attempt++
	}
	return true
}

// reloadPosition sets the worker's position to the target's offsets row,
// once the database answers (or ctx ends).
func (w *partitionWorker) reloadPosition(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		qctx, cancel := context.WithTimeout(ctx, w.d.cfg.ApplyTimeout)
		o, err := w.d.positions.load(qctx, w.id)
		cancel()
		if err == nil {
			if o.Found {
				w.st.next.Store(o.Next)
				w.rewound = max(w.rewound, o.RewindID)
			}
			return
		}
		if !sleep(ctx, w.d.cfg.retry.backoff(attempt)) {
			return
		}
	}
}

// afterCommit runs once a whole batch is durable in the target: it commits
// the group offset (for visibility; the target's own offsets row is what a
// worker resumes from) and updates the lag gauge.
func (w *partitionWorker) afterCommit(last kafka.Message) {
	next := last.Offset + 1
	w.st.next.Store(next)
	w.applied = targetdb.Offset{Next: next, LastTime: last.Time, Found: true}
	_ = w.gen.CommitOffsets(map[string]map[int]int64{w.d.topic: {last.Partition: next}}) // for visibility: the target has it
	w.d.m.setLag(last.Partition, max(last.HighWaterMark-next, 0))
}
