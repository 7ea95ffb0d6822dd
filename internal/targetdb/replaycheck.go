package targetdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// TableReplay is one projection table as the replay check found it.
type TableReplay struct {
	Table string `json:"table"`
	// Rows is how many rows the live table holds, Replayed how many the
	// replay of the ledger gives.
	Rows     int64 `json:"rows"`
	Replayed int64 `json:"replayed_rows"`
	// OnlyLive and OnlyReplay count the rows of one that the other lacks
	// (a row whose content differs counts on both sides).
	OnlyLive   int64 `json:"only_live"`
	OnlyReplay int64 `json:"only_replay"`
	// Examples are up to the asked number of differing rows of each side,
	// as JSON, prefixed "live: " or "replay: ".
	Examples []string `json:"examples,omitempty"`
}

// Same reports a table equal to its replay.
func (t TableReplay) Same() bool { return t.OnlyLive == 0 && t.OnlyReplay == 0 }

// ReplayResult is the replay check of one target.
type ReplayResult struct {
	Events int64         `json:"events"` // ledger events replayed
	Tables []TableReplay `json:"tables"`
	Took   time.Duration `json:"took_ns"`
}

// Same reports every table equal to its replay.
func (r ReplayResult) Same() bool {
	for _, t := range r.Tables {
		if !t.Same() {
			return false
		}
	}
	return true
}

// Summary says in one line what the check found on target.
func (r ReplayResult) Summary(target string) string {
	if len(r.Tables) == 0 {
		return target + " has no projection tables"
	}
	var parts []string
	for _, t := range r.Tables {
		if t.Same() {
			parts = append(parts, fmt.Sprintf("%s: %d rows equal", t.Table, t.Rows))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: %d rows only live, %d only in the replay; %s", t.Table, t.OnlyLive, t.OnlyReplay,
			strings.Join(t.Examples, ", ")))
	}
	return fmt.Sprintf("%s's projections recomputed from its %d ledger events: %s", target, r.Events, strings.Join(parts, "; "))
}

// ErrNotReplayable is returned (wrapped) by ReplayCheck for projections it
// cannot recompute beside the live tables.
var ErrNotReplayable = errors.New("projections cannot be replayed beside the live tables")

// ReplayCheck recomputes every projection of ps from the target's own ledger
// and compares the result with the live tables, row by row: the proof that
// what readers read is what the log says. In one REPEATABLE READ
// transaction, which it rolls back: the ledger and the tables are read
// from one snapshot (the applier writes both in one transaction), each
// projection table gets an empty temporary twin of the same name and
// shape, which the projections' unqualified names resolve to
// (PostgreSQL searches pg_temp first), the ledger is replayed through them
// in log order, chunk by chunk, and each twin is compared with its live
// table with EXCEPT ALL — in the server, in bounded memory. examples
// differing rows of each side are shown per table. progress (may be nil)
// is called after each chunk. Nothing live is written or locked beyond
// ACCESS SHARE.
func ReplayCheck(ctx context.Context, conn *pgx.Conn, ps *Projections, examples int, chunk int, progress func(RebuildProgress)) (ReplayResult, error) {
	var res ReplayResult
	tables := ps.Tables()
	if len(tables) == 0 {
		return res, nil
	}
	for _, t := range tables {
		if strings.Contains(t, ".") {
			return res, fmt.Errorf("%w: table %s is schema-qualified, so the replay cannot write beside it", ErrNotReplayable, t)
		}
	}
	if chunk <= 0 {
		chunk = 5000
	}
	began := time.Now()
	if _, err := conn.Exec(ctx, stagingTables); err != nil {
		return res, err
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return res, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	live := map[string]string{}
	for _, t := range tables {
		var qualified string
		err := tx.QueryRow(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)`, t).Scan(&qualified)
		if errors.Is(err, pgx.ErrNoRows) {
			return res, fmt.Errorf("%w: table %s does not exist", ErrNotReplayable, t)
		}
		if err != nil {
			return res, err
		}
		live[t] = qualified
		if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TEMP TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS
			INCLUDING INDEXES INCLUDING GENERATED INCLUDING IDENTITY) ON COMMIT DROP`, pgx.Identifier{t}.Sanitize(), qualified)); err != nil {
			return res, fmt.Errorf("a twin of %s: %w", qualified, err)
		}
	}
	// Statements this session prepared before name the live tables: a
	// temporary table of the same name does not make PostgreSQL plan them
	// again. (Afterwards the twins are dropped, which does.)
	if err := conn.DeallocateAll(ctx); err != nil {
		return res, err
	}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM sluice_events`).Scan(&res.Events); err != nil {
		return res, err
	}
	if _, err := replayLedger(ctx, tx, ps, chunk, func(done int64) {
		if progress != nil {
			progress(RebuildProgress{Done: done, Total: res.Events, Elapsed: time.Since(began), Projections: ps.Names()})
		}
	}); err != nil {
		return res, err
	}
	for _, t := range tables {
		twin := "pg_temp." + pgx.Identifier{t}.Sanitize()
		tr := TableReplay{Table: strings.Trim(live[t], `"`)}
		err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT (SELECT count(*) FROM %[1]s), (SELECT count(*) FROM %[2]s),
			(SELECT count(*) FROM (SELECT * FROM %[1]s EXCEPT ALL SELECT * FROM %[2]s) d),
			(SELECT count(*) FROM (SELECT * FROM %[2]s EXCEPT ALL SELECT * FROM %[1]s) d)`, live[t], twin)).
			Scan(&tr.Rows, &tr.Replayed, &tr.OnlyLive, &tr.OnlyReplay)
		if err != nil {
			return res, fmt.Errorf("compare %s with its replay: %w", live[t], err)
		}
		if !tr.Same() && examples > 0 {
			rows, err := tx.Query(ctx, fmt.Sprintf(`
				(SELECT 'live: ' || row_to_json(d)::text FROM (SELECT * FROM %[1]s EXCEPT ALL SELECT * FROM %[2]s) d LIMIT %[3]d)
				UNION ALL
				(SELECT 'replay: ' || row_to_json(d)::text FROM (SELECT * FROM %[2]s EXCEPT ALL SELECT * FROM %[1]s) d LIMIT %[3]d)`,
				live[t], twin, examples))
			if err != nil {
				return res, err
			}
			if tr.Examples, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return res, err
			}
		}
		res.Tables = append(res.Tables, tr)
	}
	res.Took = time.Since(began)
	return res, nil
}
