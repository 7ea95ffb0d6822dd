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
	// all new (see targetStore.apply); nil: always the deduplicating way.
	expectNew *bool
}

// applySpan applies recs to the target, as a worker does (see
// workerDeps.applySpan).
func (a *Applier) applySpan(ctx context.Context, recs []targetdb.Record, prog *progress) error {
	return a.workerDeps().applySpan(ctx, recs, prog)
}

// applySpan applies recs in order. A retryable error returns at once; a
// permanent one is narrowed down by splitting the span in halves until the
// one record at fault is found, which goes to the DLQ, and the rest apply.
func (d *workerDeps) applySpan(ctx context.Context, recs []targetdb.Record, prog *progress) error {
	for i := range recs {
		if recs[i].DecodeErr != nil { // no database needed to know this one is poison
			if err := d.applySpan(ctx, recs[:i], prog); err != nil {
				return err
			}
			if err := d.deadLetterOne(ctx, recs[i], recs[i].DecodeErr, prog); err != nil {
				return err
			}
			prog.done++
			return d.applySpan(ctx, recs[i+1:], prog)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	cur := targetdb.CursorAfter(d.topic, prog.next, recs[len(recs)-1].Msg)
	inserted, err := d.positions.apply(ctx, recs, cur, prog.expectNew)
	if err == nil {
		prog.next = cur.Next
		d.m.applied.Add(float64(inserted))
		d.m.duplicate.Add(float64(int64(len(recs)) - inserted))
		prog.done += len(recs)
		return nil
	}
	if targetdb.Classify(err) == targetdb.Retryable || errors.Is(err, targetdb.ErrOffsetsMoved) {
		return fmt.Errorf("apply %d records to %s at %d/%d: %w", len(recs), d.target, recs[0].Msg.Partition, recs[0].Msg.Offset, err)
	}
	d.m.failed(targetdb.Permanent)
	if len(recs) == 1 {
		if err := d.deadLetterOne(ctx, recs[0], err, prog); err != nil {
			return err
		}
		prog.done++
		return nil
	}
	mid := len(recs) / 2
	if err := d.applySpan(ctx, recs[:mid], prog); err != nil {
		return err
	}
	return d.applySpan(ctx, recs[mid:], prog)
}

// deadLetterOne sends r to the DLQ, then moves the partition's offsets row
// past r at once. Waiting for the rest of the batch to move it would
// dead-letter r a second time whenever that rest fails retryably and the
// batch is fetched again (a pause, a rewind, a restart, a lost partition).
func (d *workerDeps) deadLetterOne(ctx context.Context, r targetdb.Record, cause error, prog *progress) error {
	if err := d.dlq.deadLetter(ctx, r, cause); err != nil {
		return fmt.Errorf("dead-letter %d/%d: %w", r.Msg.Partition, r.Msg.Offset, err)
	}
	d.m.deadLettered.Inc()
	d.log.Warn("record dead-lettered", "partition", r.Msg.Partition, "offset", r.Msg.Offset,
		"dlq", d.dlqTopic, "err", cause)
	cur := targetdb.CursorAfter(d.topic, prog.next, r.Msg)
	if err := d.positions.advance(ctx, cur); err != nil {
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
func (s targetStore) apply(ctx context.Context, recs []targetdb.Record, cur targetdb.Cursor, expectNew *bool) (int64, error) {
	if s.projections.Empty() && expectNew != nil && *expectNew {
		err := targetdb.ApplyNew(ctx, s.pool, recs, cur)
		if !errors.Is(err, targetdb.ErrNotAllNew) {
			return int64(len(recs)), err
		}
		*expectNew = false
	}
	inserted, err := targetdb.Apply(ctx, s.pool, recs, cur, s.projections)
	if err == nil && expectNew != nil && inserted == int64(len(recs)) {
		*expectNew = true
	}
	return inserted, err
}
