package targetdb

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// BackfillOptions tune Backfill. The zero value works.
type BackfillOptions struct {
	// Chunk is how many events one transaction on the new target carries.
	// Default 2000.
	Chunk int
	// Rate bounds the events read from the old target per second, so that
	// its own applying does not slow; 0 is unbounded.
	Rate float64
	// Progress, when set, is called after every chunk.
	Progress func(BackfillProgress)
	// Retrying, when set, is told of every retryable failure of either
	// target (a lock, a timeout, a lost connection) before the chunk, or
	// the snapshot of the old target, is tried again.
	Retrying func(err error, attempt int)
	// DeadLetter takes an event the new target refuses (a data error of
	// SQLSTATE class 22 or 23: its schema's fault with this one event, as
	// an applier's dead letters): value is the event as a CloudEvent in
	// JSON. The backfill goes on past it once it returns nil. Without it
	// such an event stops the backfill.
	DeadLetter func(ctx context.Context, partition int, offset int64, value []byte, cause error) error
}

// BackfillProgress is how far a backfill got.
type BackfillProgress struct {
	Done, Total int64
	Elapsed     time.Duration
}

// BackfillResult says what a backfill did.
type BackfillResult struct {
	// Copied is how many events were read from the old target in this run;
	// New how many of them the new target did not hold yet (a resumed run
	// reads again what it had copied before, and applies nothing twice).
	Copied, New int64
	// Offsets is where the new target's applier continues: the old
	// target's offsets at the snapshot.
	Offsets map[int]int64
	// DeadLettered is how many events the new target refused and
	// DeadLetter took.
	DeadLettered int64
}

// backfillTopic names the new target's offsets rows that record how far a
// backfill from a target got, per partition, so that a killed backfill
// resumes where it was.
func backfillTopic(eventsTopic string) string { return "sluice.backfill:" + eventsTopic }

// Backfill fills the ledger of a new target (dst) from an old one (src),
// through dst's projections, without needing the log in Kafka. It reads src's
// ledger and offsets from one snapshot (a read-only repeatable-read
// transaction: it takes no lock that src's applier waits on), copies the
// ledger partition by partition in log order, chunk by chunk, each chunk one
// transaction on dst (ledger, projections of the new events, progress row),
// and finally moves dst's offsets to the snapshot's — never back — so dst's
// applier continues from the log with no gap and no double effect. Killed,
// it resumes from its progress rows; what it copies again is not new to the
// ledger and reaches no projection.
func Backfill(ctx context.Context, src *pgx.Conn, dst *pgxpool.Pool, eventsTopic string, ps *Projections, opts BackfillOptions) (BackfillResult, error) {
	if opts.Chunk <= 0 {
		opts.Chunk = 2000
	}
	// A lock on the old target's ledger (a migration, a stale transaction)
	// is waited out as one on the new target is: a run that failed on it
	// is started again, and resumes from its progress rows.
	for attempt := 0; ; attempt++ {
		res, err := backfill(ctx, src, dst, eventsTopic, ps, opts)
		var old *oldTargetError
		if err == nil || !errors.As(err, &old) || Classify(err) != Retryable || ctx.Err() != nil {
			return res, err
		}
		if src.IsClosed() {
			return res, err // the caller's session is gone: nothing to retry on
		}
		if opts.Retrying != nil {
			opts.Retrying(err, attempt)
		}
		if !sleepCtx(ctx, backfillBackoff(attempt)) {
			return res, ctx.Err()
		}
	}
}

// oldTargetError is a failure of the old target's snapshot.
type oldTargetError struct{ err error }

func (e *oldTargetError) Error() string { return "old target: " + e.err.Error() }
func (e *oldTargetError) Unwrap() error { return e.err }

func backfillBackoff(attempt int) time.Duration {
	return min(100*time.Millisecond<<min(attempt, 6), 5*time.Second)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func backfill(ctx context.Context, src *pgx.Conn, dst *pgxpool.Pool, eventsTopic string, ps *Projections, opts BackfillOptions) (BackfillResult, error) {
	res := BackfillResult{Offsets: map[int]int64{}}
	snap, err := src.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return res, &oldTargetError{err}
	}
	defer snap.Rollback(context.WithoutCancel(ctx))
	if res.Offsets, err = Offsets(ctx, snap, eventsTopic); err != nil {
		return res, &oldTargetError{err}
	}
	progress, err := backfillProgress(ctx, dst, eventsTopic)
	if err != nil {
		return res, fmt.Errorf("new target: %w", err)
	}
	var total int64
	if err := snap.QueryRow(ctx, `SELECT count(*) FROM sluice_events`).Scan(&total); err != nil {
		return res, &oldTargetError{err}
	}
	parts, err := ledgerPartitions(ctx, snap)
	if err != nil {
		return res, &oldTargetError{err}
	}
	began := time.Now()
	for _, p := range parts {
		if err := backfillPartition(ctx, snap, dst, eventsTopic, ps, p, progress[p], opts, &res, total, began); err != nil {
			return res, err
		}
	}
	// dst continues from the snapshot: never back, if its applier already
	// went further.
	for p, off := range res.Offsets {
		_, err := dst.Exec(ctx, `INSERT INTO sluice_offsets (topic, partition, next_offset, updated_at) VALUES ($1, $2, $3, now())
			ON CONFLICT (topic, partition) DO UPDATE SET next_offset = GREATEST(sluice_offsets.next_offset, EXCLUDED.next_offset),
				last_record_time = CASE WHEN sluice_offsets.next_offset >= EXCLUDED.next_offset THEN sluice_offsets.last_record_time END,
				updated_at = now()`, eventsTopic, int32(p), off)
		if err != nil {
			return res, fmt.Errorf("new target: set offsets: %w", err)
		}
	}
	return res, nil
}

func backfillProgress(ctx context.Context, dst *pgxpool.Pool, eventsTopic string) (map[int]int64, error) {
	return Offsets(ctx, dst, backfillTopic(eventsTopic))
}

func ledgerPartitions(ctx context.Context, tx pgx.Tx) ([]int, error) {
	rows, err := tx.Query(ctx, `SELECT DISTINCT kafka_partition FROM sluice_events`)
	if err != nil {
		return nil, err
	}
	parts, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, err
	}
	out := make([]int, len(parts))
	for i, p := range parts {
		out[i] = int(p)
	}
	sort.Ints(out)
	return out, nil
}

// backfillPartition copies one partition's events at or after from.
func backfillPartition(ctx context.Context, snap pgx.Tx, dst *pgxpool.Pool, eventsTopic string, ps *Projections, p int, from int64,
	opts BackfillOptions, res *BackfillResult, total int64, began time.Time) error {
	cursor := fmt.Sprintf("sluice_backfill_%d", p)
	if _, err := snap.Exec(ctx, `DECLARE `+cursor+` NO SCROLL CURSOR FOR SELECT `+batchColumns+
		` FROM sluice_events WHERE kafka_partition = $1 AND kafka_offset >= $2 ORDER BY kafka_offset`, int32(p), from); err != nil {
		return &oldTargetError{err}
	}
	for {
		chunkBegan := time.Now()
		rows, err := snap.Query(ctx, fmt.Sprintf(`FETCH %d FROM %s`, opts.Chunk, cursor))
		if err != nil {
			return &oldTargetError{err}
		}
		values, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
		if err != nil {
			return &oldTargetError{err}
		}
		if len(values) == 0 {
			return nil
		}
		n, err := backfillSpan(ctx, snap, dst, eventsTopic, ps, p, values, opts, res)
		if err != nil {
			return err
		}
		res.Copied += int64(len(values))
		res.New += n
		if opts.Progress != nil {
			opts.Progress(BackfillProgress{Done: res.Copied, Total: total, Elapsed: time.Since(began)})
		}
		if opts.Rate > 0 { // stay under Rate events/s
			want := time.Duration(float64(len(values)) / opts.Rate * float64(time.Second))
			if wait := want - time.Since(chunkBegan); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
			}
		}
	}
}

// backfillSpan applies values (rows of one partition, in log order) to
// dst, waiting out retryable failures. An event the new target refuses is
// found by splitting the span in halves, as an applier finds one in a
// batch, and goes to opts.DeadLetter; the rest applies, in order.
func backfillSpan(ctx context.Context, snap pgx.Tx, dst *pgxpool.Pool, eventsTopic string, ps *Projections, p int,
	values [][]any, opts BackfillOptions, res *BackfillResult) (int64, error) {
	if len(values) == 0 {
		return 0, nil
	}
	last := values[len(values)-1][len(values[0])-1].(int64) // kafka_offset is the last column
	for attempt := 0; ; attempt++ {
		n, err := backfillChunk(ctx, dst, eventsTopic, ps, p, values, last+1)
		if err == nil {
			return n, nil
		}
		if Classify(err) == Permanent && opts.DeadLetter != nil {
			if len(values) == 1 {
				return 0, backfillDeadLetter(ctx, snap, dst, eventsTopic, p, last, err, opts, res)
			}
			mid := len(values) / 2
			n, err := backfillSpan(ctx, snap, dst, eventsTopic, ps, p, values[:mid], opts, res)
			if err != nil {
				return n, err
			}
			m, err := backfillSpan(ctx, snap, dst, eventsTopic, ps, p, values[mid:], opts, res)
			return n + m, err
		}
		// A locked, slow or restarting new target is waited for: the span
		// is retried.
		if Classify(err) != Retryable || ctx.Err() != nil {
			return 0, fmt.Errorf("new target: partition %d at %d: %w", p, last, err)
		}
		if opts.Retrying != nil {
			opts.Retrying(err, attempt)
		}
		if !sleepCtx(ctx, backfillBackoff(attempt)) {
			return 0, ctx.Err()
		}
	}
}

// eventAsCloudEvent rebuilds a ledger row as a CloudEvent in JSON, for a
// dead letter: the record in Kafka may be gone, the row is what the old
// target holds.
const eventAsCloudEvent = `
SELECT (jsonb_strip_nulls(jsonb_build_object('specversion', '1.0', 'id', id, 'source', source, 'type', type,
	'subject', subject, 'time', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
	'datacontenttype', datacontenttype, 'dataschema', dataschema, 'data_base64', data_base64))
	|| coalesce(extensions, '{}'::jsonb)
	|| CASE WHEN data IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('data', data) END)::text
FROM sluice_events WHERE kafka_partition = $1 AND kafka_offset = $2`

// backfillDeadLetter hands the refused event at offset to opts.DeadLetter,
// then records the partition's progress past it.
func backfillDeadLetter(ctx context.Context, snap pgx.Tx, dst *pgxpool.Pool, eventsTopic string, p int, offset int64,
	cause error, opts BackfillOptions, res *BackfillResult) error {
	var value string
	if err := snap.QueryRow(ctx, eventAsCloudEvent, int32(p), offset).Scan(&value); err != nil {
		return &oldTargetError{fmt.Errorf("read the refused event %d/%d: %w", p, offset, err)}
	}
	if err := opts.DeadLetter(ctx, p, offset, []byte(value), cause); err != nil {
		return fmt.Errorf("dead-letter %d/%d: %w", p, offset, err)
	}
	res.DeadLettered++
	for attempt := 0; ; attempt++ {
		_, err := dst.Exec(ctx, `INSERT INTO sluice_offsets (topic, partition, next_offset, updated_at) VALUES ($1, $2, $3, now())
			ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()`,
			backfillTopic(eventsTopic), int32(p), offset+1)
		if err == nil {
			return nil
		}
		if Classify(err) != Retryable || !sleepCtx(ctx, backfillBackoff(attempt)) {
			return fmt.Errorf("new target: record progress past %d/%d: %w", p, offset, err)
		}
	}
}

// backfillChunk applies one chunk to dst in one transaction: ledger, the
// projections over its new events, and the progress row.
func backfillChunk(ctx context.Context, dst *pgxpool.Pool, eventsTopic string, ps *Projections, p int, values [][]any, next int64) (int64, error) {
	var inserted int64
	err := pgx.BeginFunc(ctx, dst, func(tx pgx.Tx) error {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"sluice_staging"}, ColumnNames(), pgx.CopyFromRows(values)); err != nil {
			return err
		}
		if !ps.empty() {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared(hashtext($1))`, rebuildLock); err != nil {
				return err
			}
		}
		ct, err := tx.Exec(ctx, insertKeepingNew)
		if err != nil {
			return err
		}
		if inserted = ct.RowsAffected(); inserted > 0 && !ps.empty() {
			if _, err := ps.run(ctx, tx, ""); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO sluice_offsets (topic, partition, next_offset, updated_at) VALUES ($1, $2, $3, now())
			ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()`,
			backfillTopic(eventsTopic), int32(p), next)
		return err
	})
	return inserted, err
}
