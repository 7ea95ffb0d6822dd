package consumer

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/internal/targetdb"
)

// progress is how far applySpan got: the first done records are durable
// (applied or dead-lettered), in order, and the offsets row holds next.
type progress struct {
	done int
	next int64
	// expectNew, the partition's, says whether its batches have lately been
	// all new (see apply); nil: always the deduplicating way.
	expectNew *bool
}

// applySpan applies recs in order. A retryable error returns at once; a
// permanent one is narrowed down by splitting the span in halves until the
// one record at fault is found, which goes to the DLQ, and the rest apply.
func (a *Applier) applySpan(ctx context.Context, recs []targetdb.Record, prog *progress) error {
	for i := range recs {
		if recs[i].DecodeErr != nil { // no database needed to know this one is poison
			if err := a.applySpan(ctx, recs[:i], prog); err != nil {
				return err
			}
			if err := a.deadLetterOne(ctx, recs[i], recs[i].DecodeErr, prog); err != nil {
				return err
			}
			prog.done++
			return a.applySpan(ctx, recs[i+1:], prog)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	cur := targetdb.CursorAfter(a.cfg.Topic, prog.next, recs[len(recs)-1].Msg)
	inserted, err := a.apply(ctx, recs, cur, prog)
	if err == nil {
		prog.next = cur.Next
		a.m.applied.Add(float64(inserted))
		a.m.duplicate.Add(float64(int64(len(recs)) - inserted))
		prog.done += len(recs)
		return nil
	}
	if targetdb.Classify(err) == targetdb.Retryable || errors.Is(err, targetdb.ErrOffsetsMoved) {
		return fmt.Errorf("apply %d records to %s at %d/%d: %w", len(recs), a.cfg.Target, recs[0].Msg.Partition, recs[0].Msg.Offset, err)
	}
	a.m.failed(targetdb.Permanent)
	if len(recs) == 1 {
		if err := a.deadLetterOne(ctx, recs[0], err, prog); err != nil {
			return err
		}
		prog.done++
		return nil
	}
	mid := len(recs) / 2
	if err := a.applySpan(ctx, recs[:mid], prog); err != nil {
		return err
	}
	return a.applySpan(ctx, recs[mid:], prog)
}

// deadLetterOne sends r to the DLQ, then moves the partition's offsets row
// past r at once. Waiting for the rest of the batch to move it would
// dead-letter r a second time whenever that rest fails retryably and the
// batch is fetched again (a pause, a rewind, a restart, a lost partition).
func (a *Applier) deadLetterOne(ctx context.Context, r targetdb.Record, cause error, prog *progress) error {
	if err := a.deadLetter(ctx, r, cause); err != nil {
		return fmt.Errorf("dead-letter %d/%d: %w", r.Msg.Partition, r.Msg.Offset, err)
	}
	a.m.deadLettered.Inc()
	a.log.Warn("record dead-lettered", "partition", r.Msg.Partition, "offset", r.Msg.Offset,
		"dlq", a.cfg.DLQTopic, "err", cause)
	cur := targetdb.CursorAfter(a.cfg.Topic, prog.next, r.Msg)
	if err := targetdb.Advance(ctx, a.pool, cur); err != nil {
		return err
	}
	prog.next = cur.Next
	return nil
}

// apply writes recs and moves cur. While the partition's batches have been
// all new, it tries the cheap path first (one COPY into the ledger); a batch
// holding a duplicate — a replay after a restart, a rewind, a resent event —
// rolls back and goes the deduplicating way, and so do the partition's
// next batches until one turns out all new again.
func (a *Applier) apply(ctx context.Context, recs []targetdb.Record, cur targetdb.Cursor, prog *progress) (int64, error) {
	if a.projections.Empty() && prog.expectNew != nil && *prog.expectNew {
		err := targetdb.ApplyNew(ctx, a.pool, recs, cur)
		if !errors.Is(err, targetdb.ErrNotAllNew) {
			return int64(len(recs)), err
		}
		*prog.expectNew = false
	}
	inserted, err := targetdb.Apply(ctx, a.pool, recs, cur, a.projections)
	if err == nil && prog.expectNew != nil && inserted == int64(len(recs)) {
		*prog.expectNew = true
	}
	return inserted, err
}
