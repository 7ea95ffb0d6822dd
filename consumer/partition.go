package consumer

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
)

// partitionWorker applies one partition for one generation.
type partitionWorker struct {
	a      *Applier
	gen    *kafka.Generation
	id     int
	log    *slog.Logger
	st     *partitionState
	reader *kafka.Reader
	pos    int64 // offset of the next record to take from Kafka
	// rewound is the id of the last rewind applied to this partition.
	rewound string
}

// runPartition is one partition's worker for one generation. It must not
// return before the generation ends: with kafka-go, one returning worker
// ends the generation for all.
func (a *Applier) runPartition(gctx context.Context, gen *kafka.Generation, p kafka.PartitionAssignment) {
	ctx, cancel := context.WithCancel(gctx)
	defer cancel()
	w := &partitionWorker{a: a, gen: gen, id: p.ID, log: a.log.With("partition", p.ID)}
	start, ok := w.startOffset(ctx, p)
	if !ok {
		return
	}
	w.pos = start
	w.st = a.partitions.add(p.ID, start)
	defer a.partitions.remove(p.ID)
	defer w.dropReader()
	w.log.Info("partition worker started", "offset", start, "last_rewind", w.rewound)
	for ctx.Err() == nil {
		desired, changed := a.ctrl.get()
		if desired.Paused { // no reader, no batch, no session until resumed
			w.dropReader()
			select {
			case <-ctx.Done():
			case <-changed:
			}
			continue
		}
		if rw := desired.Rewind; rw != nil && rw.ID != w.rewound {
			w.rewind(ctx, rw)
			continue
		}
		// While the breaker is open: no fetching, no reader, no session.
		if !a.breaker.wait(ctx, w.dropReader) {
			break
		}
		// A change of the desired state interrupts fetching and retrying.
		bctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-changed:
				cancel()
			case <-bctx.Done():
			}
		}()
		batch := w.collect(bctx)
		if len(batch) > 0 && !w.applyWithRetry(bctx, batch) {
			// Abandoned (paused, rewound, stopping): forget what was
			// fetched past the last commit; it is fetched again later.
			w.pos = w.st.next.Load()
			w.dropReader()
		}
		cancel()
	}
}

// rewind moves the partition to the rewind's offset, once per rewind id:
// the id is recorded with the offset in one statement, so a replica that
// restarts (or takes the partition over) mid-rewind never applies it twice.
func (w *partitionWorker) rewind(ctx context.Context, rw *Rewind) {
	a := w.a
	offset, ok := rw.Offsets[w.id]
	if !ok {
		w.log.Error("rewind names no offset for this partition; ignoring it", "rewind", rw.ID)
		w.rewound = rw.ID
		return
	}
	for attempt := 0; ctx.Err() == nil; {
		if !a.breaker.wait(ctx, w.dropReader) {
			return
		}
		var moved bool
		err := a.breaker.do(func() error {
			qctx, cancel := context.WithTimeout(ctx, a.cfg.ApplyTimeout)
			defer cancel()
			var err error
			moved, err = applyRewind(qctx, a.pool, a.cfg.Topic, w.id, offset, rw.ID)
			if err == nil && !moved { // applied before: resume from where the target is
				var o appliedOffset
				if o, err = loadOffset(qctx, a.pool, a.cfg.Topic, w.id); err == nil {
					offset = o.next
				}
			}
			return err
		})
		if errors.Is(err, errBreakerBusy) {
			a.breaker.waitForChange(ctx, time.Second)
			continue
		}
		if err != nil {
			w.log.Warn("rewind not recorded yet; retrying", "rewind", rw.ID, "err", err, "attempt", attempt)
			if !sleep(ctx, a.backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		w.dropReader()
		w.pos = offset
		w.st.next.Store(offset)
		w.rewound = rw.ID
		if err := w.gen.CommitOffsets(map[string]map[int]int64{a.cfg.Topic: {w.id: offset}}); err != nil {
			w.log.Debug("group offset not committed after rewind (the target has it)", "err", err)
		}
		if moved {
			w.log.Info("partition rewound", "rewind", rw.ID, "offset", offset)
		}
		return
	}
}

// startOffset is where the worker resumes: the target's own record of what it
// applied when there is one (it is written in the same transaction as the
// rows, so it is exact), else the group's committed offset (or the start of
// the log for a group that never committed). Reading it goes through the
// breaker like any other use of the target.
func (w *partitionWorker) startOffset(ctx context.Context, p kafka.PartitionAssignment) (int64, bool) {
	a := w.a
	for attempt := 0; ; {
		if !a.breaker.wait(ctx, nil) {
			return 0, false
		}
		var o appliedOffset
		err := a.breaker.do(func() error {
			qctx, cancel := context.WithTimeout(ctx, a.cfg.ApplyTimeout)
			defer cancel()
			var err error
			o, err = loadOffset(qctx, a.pool, a.cfg.Topic, p.ID)
			return err
		})
		switch {
		case err == nil && o.found:
			w.rewound = o.rewindID
			return o.next, true
		case err == nil:
			// A target that never applied this partition starts at the
			// group's offset; a rewind issued before the target existed is
			// not for it.
			if desired, _ := a.ctrl.get(); desired.Rewind != nil && desired.Rewind.RequestedAt.Before(a.createdAt) {
				w.rewound = desired.Rewind.ID
			}
			return p.Offset, true
		case errors.Is(err, errBreakerBusy):
			a.breaker.waitForChange(ctx, time.Second)
			continue
		}
		w.log.Warn("cannot read the applied offset; retrying", "err", err, "attempt", attempt)
		if !sleep(ctx, a.backoff(attempt)) {
			return 0, false
		}
		attempt++
	}
}

func (w *partitionWorker) ensureReader() *kafka.Reader {
	if w.reader == nil {
		a := w.a
		w.reader = kafka.NewReader(kafka.ReaderConfig{
			Brokers:       a.cfg.Brokers,
			Topic:         a.cfg.Topic,
			Partition:     w.id,
			MinBytes:      1,
			MaxBytes:      8 << 20,
			MaxWait:       500 * time.Millisecond,
			QueueCapacity: a.cfg.BatchSize,
			Logger:        kafkaLogger(w.log, slog.LevelDebug),
			ErrorLogger:   kafkaLogger(w.log, slog.LevelWarn),
		})
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
	a := w.a
	reader := w.ensureReader()
	fctx, cancelFetch := context.WithTimeout(ctx, a.cfg.StallTimeout)
	first, err := reader.FetchMessage(fctx)
	cancelFetch()
	if err != nil {
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, context.DeadlineExceeded):
			if end := w.st.end.Load(); end > w.pos {
				w.log.Warn("reader made no progress while records wait; rebuilding it",
					"offset", w.pos, "log_end", end, "stalled_for", a.cfg.StallTimeout)
				w.dropReader()
			}
		default:
			w.log.Warn("fetch failed; rebuilding the reader", "offset", w.pos, "err", err)
			w.dropReader()
			sleep(ctx, a.cfg.RetryMin)
		}
		return nil
	}
	batch := make([]kafka.Message, 1, a.cfg.BatchSize)
	batch[0] = first
	w.take(first)
	lctx, cancel := context.WithTimeout(ctx, a.cfg.Linger)
	defer cancel()
	for len(batch) < a.cfg.BatchSize {
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
	a := w.a
	recs := make([]record, len(msgs))
	for i, m := range msgs {
		recs[i] = decodeRecord(m)
	}
	for attempt := 0; ; {
		if !a.breaker.wait(ctx, w.dropReader) {
			w.log.Info("batch left unapplied; it will be fetched again", "offset", recs[0].msg.Offset)
			return false
		}
		// The transaction does not take ctx's cancellation: a batch under way
		// when we are told to stop is finished, within ApplyTimeout.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ApplyTimeout)
		began := a.cfg.now()
		var prog progress
		err := a.breaker.do(func() error { return a.applySpan(actx, recs, &prog) })
		cancel()
		if prog.done > 0 {
			w.st.next.Store(recs[prog.done-1].msg.Offset + 1)
			recs = recs[prog.done:] // what was committed is never redone
		}
		if err == nil {
			a.m.batchDuration.Observe(a.cfg.now().Sub(began).Seconds())
			w.afterCommit(msgs[len(msgs)-1])
			return true
		}
		if errors.Is(err, errBreakerBusy) { // not an attempt: wait for the probe or the open period
			a.breaker.waitForChange(ctx, time.Second)
			if ctx.Err() != nil {
				return false
			}
			continue
		}
		a.m.batchDuration.Observe(a.cfg.now().Sub(began).Seconds())
		a.m.failed(Classify(err))
		w.log.Warn("apply failed; batch kept for retry", "offset", recs[0].msg.Offset, "records", len(recs),
			"class", Classify(err).String(), "attempt", attempt, "breaker", a.breaker.State().String(), "err", err)
		if ctx.Err() != nil || !sleep(ctx, a.backoff(attempt)) {
			w.log.Info("batch left unapplied; it will be fetched again", "offset", recs[0].msg.Offset)
			return false
		}
		attempt++
	}
}

// afterCommit runs once a whole batch is durable in the target: it commits
// the group offset (for visibility; the target's own offsets row is what a
// worker resumes from) and updates the lag gauge.
func (w *partitionWorker) afterCommit(last kafka.Message) {
	next := last.Offset + 1
	w.st.next.Store(next)
	if err := w.gen.CommitOffsets(map[string]map[int]int64{w.a.cfg.Topic: {last.Partition: next}}); err != nil {
		w.log.Debug("group offset not committed (the target has it)", "offset", next, "err", err)
	}
	w.a.m.setLag(last.Partition, max(last.HighWaterMark-next, 0))
}
