package targetdb

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/testenv"
)

func TestTheLedgerColumnsAreThoseOfTheMigratedTable(t *testing.T) {
	conn := testenv.Conn(t, testenv.Database(t))
	rows, err := conn.Query(context.Background(), `SELECT column_name, udt_name FROM information_schema.columns WHERE table_name = 'sluice_events'`)
	if err != nil {
		t.Fatal(err)
	}
	table := map[string]string{}
	for rows.Next() {
		var name, udt string
		if err := rows.Scan(&name, &udt); err != nil {
			t.Fatal(err)
		}
		table[name] = udt
	}
	udt := map[string]string{"text": "text", "timestamptz": "timestamptz", "jsonb": "jsonb", "bytea": "bytea", "int": "int4", "bigint": "int8"}
	for _, c := range ledgerColumns {
		if got, ok := table[c.name]; !ok || got != udt[c.pgType] {
			t.Errorf("column %s %s: the migrated table has %q", c.name, c.pgType, got)
		}
	}
}

func TestApplyIsIdempotentAndMovesTheOffsetsRowWithTheRows(t *testing.T) {
	dsn := testenv.Database(t)
	pool, err := NewPool(dsn, Session{ApplicationName: "sluice-test", LockTimeout: time.Second}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx := context.Background()
	recs := make([]Record, 20)
	for i := range recs {
		recs[i] = Decode(kafka.Message{Topic: "events", Partition: 2, Offset: int64(100 + i), Value: testenv.Event("s", fmt.Sprint(i%15))})
	}
	n, err := Apply(ctx, pool, recs, CursorAfter("events", 100, recs[19].Msg), nil)
	if err != nil || n != 15 {
		t.Fatalf("first apply: %d new rows, %v; want 15 (five ids come twice)", n, err)
	}
	n, err = Apply(ctx, pool, recs, CursorAfter("events", 120, recs[19].Msg), nil)
	if err != nil || n != 0 {
		t.Fatalf("second apply: %d new rows, %v; want 0", n, err)
	}
	off, err := LoadOffset(ctx, pool, "events", 2)
	if err != nil || !off.Found || off.Next != 120 {
		t.Fatalf("offsets row %+v, %v; want next 120", off, err)
	}
}

func TestALateWriterCannotMoveTheOffsetsRowBack(t *testing.T) {
	pool := testPool(t)
	ctx := context.Background()
	rec := func(off int64, id string) Record {
		return Decode(kafka.Message{Topic: "events", Partition: 0, Offset: off, Value: testenv.Event("s", id)})
	}
	// The new owner applied 0..9; the old owner's batch of 0..4, started
	// before it lost the partition, commits late.
	if _, err := Apply(ctx, pool, []Record{rec(9, "a")}, Cursor{Topic: "events", From: 0, Next: 10}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := Apply(ctx, pool, []Record{rec(4, "late")}, Cursor{Topic: "events", From: 0, Next: 5}, nil)
	if !errors.Is(err, ErrOffsetsMoved) {
		t.Fatalf("late commit: %v, want ErrOffsetsMoved", err)
	}
	if err := Advance(ctx, pool, Cursor{Topic: "events", From: 0, Next: 5}); !errors.Is(err, ErrOffsetsMoved) {
		t.Fatalf("late advance: %v, want ErrOffsetsMoved", err)
	}
	var late int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM sluice_events WHERE id = 'late'`).Scan(&late); err != nil || late != 0 {
		t.Fatalf("the refused batch left %d rows (%v): its rows must roll back with it", late, err)
	}
	if off, _ := LoadOffset(ctx, pool, "events", 0); off.Next != 10 {
		t.Fatalf("offsets row at %d, want 10", off.Next)
	}
}

func TestRewindsApplyOnceInOrderAndNeverMoveForward(t *testing.T) {
	pool := testPool(t)
	ctx := context.Background()
	if err := Advance(ctx, pool, Cursor{Topic: "events", Partition: 2, Next: 120}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name      string
		offset    int64
		id        string
		forward   bool
		wantMoved bool
		wantNext  int64
	}{
		{"a rewind moves the partition back", 50, "20250509T140000.000000000Z-b", false, true, 50},
		{"the same rewind again changes nothing", 60, "20250509T140000.000000000Z-b", false, false, 50},
		{"an older rewind seen late changes nothing", 10, "20250509T130000.000000000Z-a", false, false, 50},
		{"a newer rewind past the position does not move it forward", 80, "20250509T150000.000000000Z-c", false, true, 50},
		{"a newer one behind the position moves it back", 20, "20250509T160000.000000000Z-d", false, true, 20},
		{"a skip moves it forward", 70, "20250509T170000.000000000Z-e", true, true, 70},
		{"a skip behind the position does not move it back", 30, "20250509T180000.000000000Z-f", true, true, 70},
		{"an older skip seen late changes nothing", 99, "20250509T165959.000000000Z-g", true, false, 70},
	}
	for _, s := range steps {
		next, moved, err := RecordMove(ctx, pool, "events", 2, s.offset, s.id, s.forward)
		if err != nil || moved != s.wantMoved || next != s.wantNext {
			t.Fatalf("%s: at %d, moved %v (%v); want %d, %v", s.name, next, moved, err, s.wantNext, s.wantMoved)
		}
		if off, _ := LoadOffset(ctx, pool, "events", 2); off.Next != s.wantNext {
			t.Fatalf("%s: offsets row at %d, want %d", s.name, off.Next, s.wantNext)
		}
	}
}

func TestEverySessionCarriesItsTimeouts(t *testing.T) {
	dsn := testenv.Database(t)
	s := Session{ApplicationName: "sluice-test", LockTimeout: 1500 * time.Millisecond, StatementTimeout: 7 * time.Second,
		IdleInTransactionTimeout: 4 * time.Second, ConnectionCheckInterval: time.Second}
	pool, err := NewPool(dsn, s, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var lock, stmt, idle, check, app string
	err = pool.QueryRow(context.Background(), `SELECT current_setting('lock_timeout'), current_setting('statement_timeout'),
		current_setting('idle_in_transaction_session_timeout'), current_setting('client_connection_check_interval'),
		current_setting('application_name')`).Scan(&lock, &stmt, &idle, &check, &app)
	if err != nil {
		t.Fatal(err)
	}
	if lock != "1500ms" || stmt != "7s" || idle != "4s" || check != "1s" || app != "sluice-test" {
		t.Fatalf("session settings %s %s %s %s %s", lock, stmt, idle, check, app)
	}
	if _, err := NewPool("postgres://u:s3cret@host:notaport/db", s, 1); err != ErrBadDSN {
		t.Fatalf("bad DSN: %v, want ErrBadDSN (and no password in the message)", err)
	}
}

// testPool is a pool on a fresh database, closed after the test.
func testPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := NewPool(testenv.Database(t), Session{ApplicationName: "sluice-test"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestApplyNewTakesOnlyBatchesOfNewEvents: the cheap path writes an all-new
// batch and its offsets row; a batch with an event the ledger holds, or
// with one event twice, writes nothing at all and says ErrNotAllNew.
func TestApplyNewTakesOnlyBatchesOfNewEvents(t *testing.T) {
	dsn := testenv.Database(t)
	pool, err := NewPool(dsn, Session{ApplicationName: "sluice-test", LockTimeout: time.Second}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx := context.Background()
	batch := func(from int, ids ...string) []Record {
		recs := make([]Record, len(ids))
		for i, id := range ids {
			recs[i] = Decode(kafka.Message{Topic: "events", Partition: 0, Offset: int64(from + i), Value: testenv.Event("s", id)})
		}
		return recs
	}
	rows := func() (n int) {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM sluice_events`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	first := batch(0, "a", "b", "c")
	if err := ApplyNew(ctx, pool, first, CursorAfter("events", 0, first[2].Msg)); err != nil {
		t.Fatalf("an all-new batch: %v", err)
	}
	for name, recs := range map[string][]Record{"an event the ledger holds": batch(3, "d", "b"), "one event twice": batch(3, "e", "e")} {
		err := ApplyNew(ctx, pool, recs, CursorAfter("events", 3, recs[1].Msg))
		if !errors.Is(err, ErrNotAllNew) {
			t.Fatalf("%s: %v, want ErrNotAllNew", name, err)
		}
		if n := rows(); n != 3 {
			t.Fatalf("%s: the ledger holds %d rows, want the 3 of before", name, n)
		}
		if off, _ := LoadOffset(ctx, pool, "events", 0); off.Next != 3 {
			t.Fatalf("%s: offsets moved to %d", name, off.Next)
		}
	}
	// A late writer is refused as by Apply.
	late := batch(0, "x")
	if err := ApplyNew(ctx, pool, late, Cursor{Topic: "events", From: 0, Next: 1}); !errors.Is(err, ErrOffsetsMoved) {
		t.Fatalf("a stale cursor: %v, want ErrOffsetsMoved", err)
	}
}
