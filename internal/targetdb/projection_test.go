package targetdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/testenv"
)

func TestCompileProjectionsRefusesWhatCannotRun(t *testing.T) {
	cases := []struct {
		name string
		p    Projection
		want string
	}{
		{"a name with capitals", Projection{Name: "Customers", SQL: "SELECT 1"}, "name"},
		{"no statement", Projection{Name: "c"}, "no SQL"},
		{"a parameter", Projection{Name: "c", SQL: "DELETE FROM t WHERE id = $1"}, "no parameters"},
		{"a recursive WITH", Projection{Name: "c", SQL: "WITH RECURSIVE r AS (SELECT 1) SELECT 1"}, "RECURSIVE"},
	}
	for _, c := range cases {
		if _, err := CompileProjections([]Projection{c.p}, nil); !errors.Is(err, ErrBadProjection) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrBadProjection naming %q", c.name, err, c.want)
		}
	}
	if _, err := CompileProjections([]Projection{{Name: "a", SQL: "SELECT 1"}, {Name: "a", SQL: "SELECT 1"}}, nil); !errors.Is(err, ErrBadProjection) {
		t.Errorf("a name declared twice: %v", err)
	}
}

// projectionDB is a fresh target with the tables of the projections below.
func projectionDB(t *testing.T) (*pgxpool.Pool, func(string) int64) {
	t.Helper()
	dsn := testenv.Database(t)
	conn := testenv.Conn(t, dsn)
	_, err := conn.Exec(context.Background(), `
		CREATE TABLE effects (id text, type text);
		CREATE TABLE customers (id text PRIMARY KEY, name text, version bigint, at_offset bigint)`)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := NewPool(dsn, Session{ApplicationName: "sluice-test"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	count := func(sql string) int64 {
		var n int64
		if err := conn.QueryRow(context.Background(), sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return pool, count
}

func event(off int64, subject, id, typ, data string) Record {
	return Decode(kafka.Message{Topic: "events", Partition: 0, Offset: off,
		Value: fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"s","type":%q,"subject":%q,"data":%s}`, id, typ, subject, data)})
}

// applyAll applies recs as one batch, moving the offsets row from where it is.
func applyAll(t *testing.T, pool *pgxpool.Pool, ps *Projections, recs []Record) (int64, error) {
	t.Helper()
	off, err := LoadOffset(context.Background(), pool, "events", 0)
	if err != nil {
		t.Fatal(err)
	}
	return Apply(context.Background(), pool, recs, CursorAfter("events", off.Next, recs[len(recs)-1].Msg), ps)
}

func TestOnlyNewEventsReachProjections(t *testing.T) {
	pool, count := projectionDB(t)
	ps, err := CompileProjections([]Projection{
		{Name: "effects", Types: []string{"order.*", "refund"}, SQL: `INSERT INTO effects SELECT id, type FROM batch`},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	batch := []Record{
		event(0, "o1", "e1", "order.placed", `{}`),
		event(1, "o1", "e2", "order.paid", `{}`),
		event(2, "o1", "e1", "order.placed", `{}`), // published twice
		event(3, "o2", "e3", "refund", `{}`),
		event(4, "o2", "e4", "refunded.not.matched", `{}`),
		event(5, "o2", "e5", "orders", `{}`), // "order.*" is a prefix with the dot
	}
	if n, err := applyAll(t, pool, ps, batch); err != nil || n != 5 {
		t.Fatalf("first apply: %d new, %v", n, err)
	}
	if got := count(`SELECT count(*) FROM effects`); got != 3 {
		t.Fatalf("%d effects, want 3: e1 once, e2, e3 (e4 and e5 are other types)", got)
	}
	// Redelivered, retried or rewound: the ledger says nothing is new.
	if n, err := applyAll(t, pool, ps, batch); err != nil || n != 0 {
		t.Fatalf("second apply: %d new, %v", n, err)
	}
	if got := count(`SELECT count(*) FROM effects`); got != 3 {
		t.Fatalf("%d effects after a redelivery, want still 3", got)
	}
}

// The documented pattern for a projection keyed like the log (by subject):
// within a batch, DISTINCT ON the key ordered by offset descending keeps the
// last event of each key; across batches the log's order does the rest.
const latestPerSubject = `
INSERT INTO customers (id, name, at_offset)
SELECT DISTINCT ON (subject) subject, data->>'name', kafka_offset
FROM batch
ORDER BY subject, kafka_partition, kafka_offset DESC
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, at_offset = EXCLUDED.at_offset`

func TestOneKeyFiftyTimesInABatchAppliesTheLastByOffset(t *testing.T) {
	pool, count := projectionDB(t)
	ps, err := CompileProjections([]Projection{{Name: "customers", SQL: latestPerSubject}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var batch []Record
	for i := range 50 {
		batch = append(batch, event(int64(i), "c1", fmt.Sprintf("e%d", i), "customer.renamed", fmt.Sprintf(`{"name":"name %d"}`, i)))
	}
	batch = append(batch, event(50, "c2", "other", "customer.renamed", `{"name":"c2"}`))
	if _, err := applyAll(t, pool, ps, batch); err != nil {
		t.Fatal(err) // ON CONFLICT DO UPDATE cannot affect a row twice: DISTINCT ON is what avoids it
	}
	if got := count(`SELECT at_offset FROM customers WHERE id = 'c1'`); got != 49 {
		t.Fatalf("c1 holds the event at offset %d, want the last one (49)", got)
	}
}

// A projection keyed on a field of data gets no order from the log: events
// about one row can come under different subjects, from different
// partitions. The documented guard: a version in the event, compared in the
// statement.
const latestByVersion = `
INSERT INTO customers (id, name, version)
SELECT DISTINCT ON (data->>'customer') data->>'customer', data->>'name', (data->>'version')::bigint
FROM batch
ORDER BY data->>'customer', (data->>'version')::bigint DESC
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, version = EXCLUDED.version
WHERE customers.version < EXCLUDED.version`

func TestADataKeyedProjectionNeedsItsVersionGuard(t *testing.T) {
	pool, count := projectionDB(t)
	ps, err := CompileProjections([]Projection{{Name: "customers", SQL: latestByVersion}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Version 2 (published under subject "crm") is applied before version 1
	// (published under "billing"): another partition, another batch.
	if _, err := applyAll(t, pool, ps, []Record{event(0, "crm", "v2", "customer.updated", `{"customer":"c9","name":"new","version":2}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := applyAll(t, pool, ps, []Record{event(1, "billing", "v1", "customer.updated", `{"customer":"c9","name":"old","version":1}`)}); err != nil {
		t.Fatal(err)
	}
	if got := count(`SELECT version FROM customers WHERE id = 'c9'`); got != 2 {
		t.Fatalf("c9 at version %d: a late, older event moved it back", got)
	}
}

func TestProjectionFailuresAreClassifiedAndNamed(t *testing.T) {
	pool, count := projectionDB(t)
	broken, err := CompileProjections([]Projection{
		{Name: "effects", SQL: `INSERT INTO effects SELECT id, type FROM batch`},
		{Name: "customers", SQL: `INSERT INTO customers (id, name, nickname) SELECT subject, data->>'name', data->>'nick' FROM batch`},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = applyAll(t, pool, broken, []Record{event(0, "c1", "e1", "t", `{"name":"x"}`)})
	var pe *ProjectionError
	if !errors.As(err, &pe) || pe.Projection != "customers" || Classify(err) != Retryable {
		t.Fatalf("a missing column: %v; want a retryable ProjectionError naming customers", err)
	}
	if got := count(`SELECT count(*) FROM sluice_events`) + count(`SELECT count(*) FROM effects`); got != 0 {
		t.Fatalf("a failed projection left %d rows behind: the batch is all or nothing", got)
	}
	// The migration that adds the column: the same batch applies.
	if _, err := pool.Exec(context.Background(), `ALTER TABLE customers ADD COLUMN nickname text`); err != nil {
		t.Fatal(err)
	}
	if _, err := applyAll(t, pool, broken, []Record{event(0, "c1", "e1", "t", `{"name":"x"}`)}); err != nil {
		t.Fatalf("after the fix: %v", err)
	}

	badValue, err := CompileProjections([]Projection{
		{Name: "versions", SQL: `INSERT INTO customers (id, version) SELECT subject, (data->>'version')::bigint FROM batch`},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = applyAll(t, pool, badValue, []Record{event(1, "c2", "e2", "t", `{"version":"not a number"}`)})
	if !errors.As(err, &pe) || pe.Projection != "versions" || Classify(err) != Permanent {
		t.Fatalf("a bad value: %v; want a permanent ProjectionError naming versions", err)
	}
}

// A projection's SQL changed: rebuild must give the table a fresh target
// would get by applying the whole log with the new SQL.
func TestRebuildGivesWhatAFreshTargetReplayingTheLogGets(t *testing.T) {
	oldSQL := latestPerSubject
	newSQL := strings.Replace(latestPerSubject, "data->>'name'", "upper(data->>'name')", 1)
	var events []Record
	for i := range 300 {
		events = append(events, event(int64(i), fmt.Sprintf("c%d", i%17), fmt.Sprintf("e%d", i), "customer.renamed", fmt.Sprintf(`{"name":"n%d"}`, i)))
	}
	snapshot := func(pool *pgxpool.Pool) string {
		rows, err := pool.Query(context.Background(), `SELECT id, name, at_offset FROM customers ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for rows.Next() {
			vals, _ := rows.Values()
			fmt.Fprintln(&b, vals...)
		}
		return b.String()
	}
	// The target as it was: three batches with the old SQL.
	live, _ := projectionDB(t)
	old, _ := CompileProjections([]Projection{{Name: "customers", SQL: oldSQL}}, nil)
	for i := 0; i < len(events); i += 100 {
		if _, err := applyAll(t, live, old, events[i:i+100]); err != nil {
			t.Fatal(err)
		}
	}
	// A fresh target with the new SQL, in other batch sizes.
	fresh, _ := projectionDB(t)
	updated, _ := CompileProjections([]Projection{{Name: "customers", SQL: newSQL, Reset: "DELETE FROM customers"}}, nil)
	for i := 0; i < len(events); i += 37 {
		if _, err := applyAll(t, fresh, updated, events[i:min(i+37, len(events))]); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := live.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Dry run first: what the new SQL would do to the last 10 events, undone.
	results, err := DryRun(context.Background(), conn.Conn(), updated, 10)
	if err != nil || len(results) != 1 || results[0].Rows == 0 || results[0].Err != nil {
		t.Fatalf("dry run: %+v, %v", results, err)
	}
	var reports []RebuildProgress
	n, err := Rebuild(context.Background(), conn.Conn(), updated, "customers", 64, func(p RebuildProgress) { reports = append(reports, p) })
	conn.Release()
	if err != nil || n != 300 {
		t.Fatalf("rebuild: %d events, %v", n, err)
	}
	if len(reports) != 6 || reports[0].Done != 0 || strings.Join(reports[0].Projections, ",") != "customers" ||
		reports[5].Done != 300 || reports[5].Total != 300 {
		t.Fatalf("progress %+v, want the projections named, then 5 reports ending at 300/300", reports)
	}
	if got, want := snapshot(live), snapshot(fresh); got != want {
		t.Fatalf("rebuilt table differs from a fresh replay:\n%s\nwant\n%s", got, want)
	}
	if !strings.Contains(snapshot(live), "N299") {
		t.Fatal("the rebuild did not use the new SQL")
	}
	opaque, _ := CompileProjections([]Projection{{Name: "opaque", SQL: "SELECT apply_somewhere(id) FROM batch"}}, nil)
	if _, err := Rebuild(context.Background(), nil, opaque, "opaque", 0, nil); !errors.Is(err, ErrNoReset) {
		t.Fatalf("rebuild of a projection that names no table and has no reset: %v, want ErrNoReset", err)
	}
}

func TestWrittenTablesAreTheTargetsOfTheStatementsWrites(t *testing.T) {
	cases := []struct{ name, sql, want string }{
		{"an upsert names its table once, not its SET", "INSERT INTO clients AS c (id) SELECT subject FROM batch ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id", "clients"},
		{"a schema-qualified, quoted table", `insert into shop."Orders" (id) select id from batch`, "shop.Orders"},
		{"data-modifying WITH clauses", "WITH d AS (DELETE FROM carts USING batch b WHERE carts.id = b.subject) UPDATE ONLY stock SET n = n - 1", "carts,stock"},
		{"a merge", "MERGE INTO balances b USING batch ON b.id = batch.subject WHEN MATCHED THEN UPDATE SET n = 1", "balances"},
		{"a statement that writes through a function", "SELECT apply_somewhere(id) FROM batch", ""},
		{"comments and strings name no table", "-- the update takes the field\n/* delete from x */ INSERT INTO t SELECT 'update y' FROM batch", "t"},
	}
	for _, c := range cases {
		if got := strings.Join(WrittenTables(c.sql), ","); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// TestARebuildNeverDestroysWhatItDoesNotRebuild is the shop example's v2:
// clients' reset must also empty client_emails (a foreign key points at
// clients), a projection of its own with no reset. Rebuilding clients alone
// must rebuild client_emails too, never leave it empty.
func TestARebuildNeverDestroysWhatItDoesNotRebuild(t *testing.T) {
	dsn := testenv.Database(t)
	conn := testenv.Conn(t, dsn)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `
		CREATE TABLE clients (client_id text PRIMARY KEY, display_name text, changes bigint NOT NULL DEFAULT 0);
		CREATE TABLE client_emails (client_id text PRIMARY KEY REFERENCES clients (client_id), email text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	pool, err := NewPool(dsn, Session{ApplicationName: "sluice-test"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	defs := []Projection{
		{Name: "clients", SQL: `INSERT INTO clients AS c (client_id, changes) SELECT subject, count(*) FROM batch GROUP BY subject
			ON CONFLICT (client_id) DO UPDATE SET changes = c.changes + EXCLUDED.changes`,
			Reset: "DELETE FROM client_emails; DELETE FROM clients"},
		{Name: "client_emails", SQL: `INSERT INTO client_emails AS e (client_id, email)
			SELECT DISTINCT ON (subject) subject, data->>'email' FROM batch WHERE data ? 'email' ORDER BY subject, kafka_offset DESC
			ON CONFLICT (client_id) DO UPDATE SET email = EXCLUDED.email`},
	}
	ps, err := CompileProjections(defs, nil)
	if err != nil {
		t.Fatal(err)
	}
	var events []Record
	for i := range 60 {
		events = append(events, event(int64(i), fmt.Sprintf("c%d", i%7), fmt.Sprintf("e%d", i), "customer.email_changed", fmt.Sprintf(`{"email":"m%d"}`, i)))
	}
	if _, err := applyAll(t, pool, ps, events); err != nil {
		t.Fatal(err)
	}
	snapshot := func() string {
		var s string
		if err := conn.QueryRow(ctx, `SELECT coalesce(string_agg(c.client_id || ':' || c.changes || ':' || coalesce(e.email, '-'), ' ' ORDER BY c.client_id), '')
			FROM clients c LEFT JOIN client_emails e USING (client_id)`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := snapshot()
	var reports []RebuildProgress
	rc, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Release()
	if _, err := Rebuild(ctx, rc.Conn(), ps, "clients", 16, func(p RebuildProgress) { reports = append(reports, p) }); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(); after != before || !strings.Contains(after, "@") && !strings.Contains(after, ":m") {
		t.Fatalf("after rebuilding clients: %s\nbefore: %s", after, before)
	}
	if got := strings.Join(reports[0].Projections, ","); got != "clients,client_emails" {
		t.Errorf("rebuilt %q; client_emails' table was emptied by clients' reset, so it must be rebuilt too", got)
	}
}
