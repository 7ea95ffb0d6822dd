package targetdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoReset is returned (wrapped) by Rebuild for a projection that has no
// Reset statement: sluice cannot know what it would have to empty.
var ErrNoReset = errors.New("projection has no reset statement")

// ledgerInLogOrder reads the ledger in the order its events were applied:
// by partition, then offset. Events about one subject share a partition, so
// each subject's events come in their log order.
var ledgerInLogOrder = `SELECT ` + batchColumns + ` FROM sluice_events ORDER BY kafka_partition, kafka_offset`

// replayLedger runs ps over the whole ledger in log order, chunk events at
// a time, in tx: one scan of the ledger through a cursor, each chunk copied
// into the batch table, the projections run over it, and it emptied. done
// is told how many events were replayed after each chunk. (Moving chunks
// within the server would need an index on the log position that the
// ledger does not have; one scan through a cursor is linear.)
func replayLedger(ctx context.Context, tx pgx.Tx, ps *Projections, chunk int, done func(int64)) (int64, error) {
	if _, err := tx.Exec(ctx, `DECLARE sluice_replay NO SCROLL CURSOR FOR `+ledgerInLogOrder); err != nil {
		return 0, err
	}
	fetch := fmt.Sprintf(`FETCH %d FROM sluice_replay`, chunk)
	var total int64
	for {
		rows, err := tx.Query(ctx, fetch)
		if err != nil {
			return total, fmt.Errorf("read the ledger: %w", err)
		}
		values, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
		if err != nil {
			return total, fmt.Errorf("read the ledger: %w", err)
		}
		if len(values) == 0 {
			_, err := tx.Exec(ctx, `CLOSE sluice_replay`)
			return total, err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"sluice_batch"}, ColumnNames(), pgx.CopyFromRows(values)); err != nil {
			return total, err
		}
		if _, err := ps.run(ctx, tx, ""); err != nil {
			return total, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM sluice_batch`); err != nil {
			return total, err
		}
		total += int64(len(values))
		done(total)
	}
}

// DryRun runs every projection of ps over the target's last n ledger events
// (by when they were applied), in a transaction it rolls back, and returns
// what each would have done. The target's tables are not changed.
func DryRun(ctx context.Context, conn *pgx.Conn, ps *Projections, n int) ([]ProjectionResult, error) {
	if _, err := conn.Exec(ctx, stagingTables); err != nil {
		return nil, err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	_, err = tx.Exec(ctx, `INSERT INTO sluice_batch SELECT `+batchColumns+` FROM
		(SELECT * FROM sluice_events ORDER BY applied_at DESC, kafka_partition DESC, kafka_offset DESC LIMIT $1) last
		ORDER BY kafka_partition, kafka_offset`, n)
	if err != nil {
		return nil, fmt.Errorf("take the last %d events: %w", n, err)
	}
	// Every projection runs, even after one fails, to show them all.
	var out []ProjectionResult
	for _, name := range ps.Names() {
		if _, err := tx.Exec(ctx, `SAVEPOINT dry_run`); err != nil {
			return out, err
		}
		results, _ := ps.run(ctx, tx, name)
		out = append(out, results...)
		if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT dry_run`); err != nil {
			return out, err
		}
	}
	return out, nil
}

// RebuildProgress is how far a rebuild got.
type RebuildProgress struct {
	Done, Total int64
	Elapsed     time.Duration
	// Projections are the projections being rebuilt: those asked for and
	// those whose tables their resets changed.
	Projections []string
}

// writtenByThisTransaction lists the tables the session's transaction has
// written so far (deletes, updates, inserts, truncates — its own, a
// foreign key's cascade's, a trigger's): those it holds a lock on that
// only writing takes.
const writtenByThisTransaction = `
SELECT DISTINCT n.nspname, c.relname
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
  AND l.mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
  AND c.relkind IN ('r', 'p') AND n.nspname NOT LIKE 'pg_temp%'`

// owns reports whether table (as pg_class names it) is one of c's Tables.
func (c compiled) owns(schema, table string) bool {
	for _, t := range c.Tables {
		if t == table || t == schema+"."+table {
			return true
		}
	}
	return false
}

// Rebuild recomputes projection only (every projection with a Reset, when
// only is empty) from the target's own ledger, without Kafka: in one
// transaction, it empties what the projection wrote (its Reset) and runs it
// over every ledger event in log order, chunk by chunk. A reset never
// destroys what is not rebuilt: when a reset changed a table another
// projection writes (a reset that names it, a foreign key's cascade, a
// trigger), that projection is reset and rebuilt too, in its place in the
// order; if it cannot be (no reset), nothing is done. Readers keep seeing
// the old state until the new one commits whole. The transaction holds the
// rebuild lock, so the target's applier waits (its lag grows) and resumes
// after it, with no gap. progress is called after every chunk.
func Rebuild(ctx context.Context, conn *pgx.Conn, ps *Projections, only string, chunk int, progress func(RebuildProgress)) (int64, error) {
	if chunk <= 0 {
		chunk = 5000
	}
	var todo []compiled
	for _, c := range ps.list {
		if only != "" && c.Name != only {
			continue
		}
		if c.Reset == "" {
			if only != "" {
				return 0, fmt.Errorf("%w: %s", ErrNoReset, c.Name)
			}
			continue
		}
		todo = append(todo, c)
	}
	if len(todo) == 0 {
		return 0, fmt.Errorf("%w: nothing to rebuild (only %q)", ErrNoReset, only)
	}
	if _, err := conn.Exec(ctx, stagingTables); err != nil {
		return 0, err
	}
	var total int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM sluice_events`).Scan(&total); err != nil {
		return 0, err
	}
	began := time.Now()
	var done int64
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, rebuildLock); err != nil {
			return fmt.Errorf("take the rebuild lock: %w", err)
		}
		todo, err := resetAll(ctx, tx, ps, todo)
		if err != nil {
			return err
		}
		if progress != nil {
			progress(RebuildProgress{Total: total, Projections: (&Projections{list: todo}).Names()})
		}
		rebuilding := &Projections{list: todo}
		done, err = replayLedger(ctx, tx, rebuilding, chunk, func(n int64) {
			if progress != nil {
				progress(RebuildProgress{Done: n, Total: total, Elapsed: time.Since(began), Projections: rebuilding.Names()})
			}
		})
		return err
	})
	return done, err
}

// resetAll runs the resets of todo in tx, then of every projection whose
// tables they changed, until no reset changes the tables of a projection
// left out. It returns what must be rebuilt, in the projections' order.
func resetAll(ctx context.Context, tx pgx.Tx, ps *Projections, todo []compiled) ([]compiled, error) {
	included := map[string]bool{}
	for _, c := range todo {
		included[c.Name] = true
	}
	for pending := todo; len(pending) > 0; {
		for _, c := range pending {
			if _, err := tx.Exec(ctx, c.Reset); err != nil {
				return nil, &ProjectionError{Projection: c.Name, Err: fmt.Errorf("reset: %w", err)}
			}
		}
		rows, err := tx.Query(ctx, writtenByThisTransaction)
		if err != nil {
			return nil, err
		}
		written, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Schema, Table string }])
		if err != nil {
			return nil, err
		}
		pending = nil
		for _, c := range ps.list {
			if included[c.Name] {
				continue
			}
			for _, w := range written {
				if !c.owns(w.Schema, w.Table) {
					continue
				}
				if c.Reset == "" {
					return nil, fmt.Errorf("%w: the reset changed %s.%s, which projection %s writes and cannot rebuild; "+
						"give %s a reset (or tables), or rebuild every projection", ErrNoReset, w.Schema, w.Table, c.Name, c.Name)
				}
				included[c.Name] = true
				pending = append(pending, c)
				break
			}
		}
	}
	var out []compiled
	for _, c := range ps.list {
		if included[c.Name] {
			out = append(out, c)
		}
	}
	return out, nil
}
