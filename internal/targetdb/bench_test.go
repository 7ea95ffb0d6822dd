package targetdb

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/schema"
)

// BenchmarkApply measures applying a batch of 500 events to PostgreSQL the
// way the applier does (one transaction: COPY into staging, INSERT … ON
// CONFLICT DO NOTHING, offsets row), with and without two projections,
// against a raw COPY of the same rows into a table with the ledger's columns,
// key and indexes, on cluster A of
// deploy/local (SLUICE_TEST_PG_A). `make bench` prints the ratio.
func BenchmarkApply(b *testing.B) {
	base := os.Getenv("SLUICE_TEST_PG_A")
	if base == "" {
		b.Skip("SLUICE_TEST_PG_A is not set: run `make bench`")
	}
	ctx := context.Background()
	name := fmt.Sprintf("sluice_bench_%d", time.Now().UnixNano())
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		b.Fatal(err)
	}
	defer admin.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
	cc, _ := pgx.ParseConfig(base)
	dsn := fmt.Sprintf("postgres://%s:%s@%s:%d/%s", cc.User, cc.Password, cc.Host, cc.Port, name)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := schema.Migrate(ctx, conn, schema.LatestVersion(), schema.MigrateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE raw_events (LIKE sluice_events INCLUDING ALL)`); err != nil {
		b.Fatal(err)
	}
	conn.Close(ctx)

	const size = 500
	// The harness calls each sub-benchmark several times while it sizes b.N:
	// every call gets ids of its own, so both sides always insert new rows.
	runs := 0
	batch := func(run, i int) []Record {
		recs := make([]Record, size)
		for j := range recs {
			raw := fmt.Sprintf(`{"specversion":"1.0","id":"%d-%d-%d","source":"bench","type":"bench.v1","subject":"customer-%d","time":"2025-05-09T14:00:00Z","data":{"amount":%d,"note":"a typical small payload"}}`, run, i, j, j%97, j)
			recs[j] = Decode(kafka.Message{Topic: "sluice.events", Partition: 0, Offset: int64(i*size + j), Value: []byte(raw)})
		}
		return recs
	}
	pool, err := NewPool(dsn, Session{ApplicationName: "sluice-bench", LockTimeout: 2 * time.Second}, 2)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()

	// Two projections of the kind deploy/examples/shop ships: a latest
	// state per subject, and an append-only history.
	if _, err := pool.Exec(ctx, `CREATE TABLE bench_latest (subject text PRIMARY KEY, amount int, changes bigint);
		CREATE TABLE bench_history (id text, subject text, amount int)`); err != nil {
		b.Fatal(err)
	}
	projections, err := CompileProjections([]Projection{
		{Name: "latest", Types: []string{"bench.*"}, SQL: `INSERT INTO bench_latest AS l (subject, amount, changes)
			SELECT subject, (array_agg((data->>'amount')::int ORDER BY kafka_offset DESC))[1], count(*) FROM batch GROUP BY subject
			ON CONFLICT (subject) DO UPDATE SET amount = EXCLUDED.amount, changes = l.changes + EXCLUDED.changes`},
		{Name: "history", SQL: `INSERT INTO bench_history SELECT id, subject, (data->>'amount')::int FROM batch`},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	apply := func(ps *Projections) func(b *testing.B) {
		return func(b *testing.B) {
			runs++
			batches := make([][]Record, b.N)
			for i := range batches {
				batches[i] = batch(runs, i)
			}
			off, err := LoadOffset(ctx, pool, "sluice.events", 0)
			if err != nil {
				b.Fatal(err)
			}
			from := off.Next
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				cur := CursorAfter("sluice.events", from, batches[i][size-1].Msg)
				from = cur.Next
				n, err := Apply(ctx, pool, batches[i], cur, ps)
				if err != nil {
					b.Fatal(err)
				}
				if n != size {
					b.Fatalf("inserted %d of %d: the benchmark must measure new rows", n, size)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		}
	}
	b.Run("sluice_apply", apply(nil))
	// The applier's common case: a batch of events the ledger never saw,
	// straight into the ledger (ApplyNew).
	b.Run("sluice_apply_new", func(b *testing.B) {
		runs++
		batches := make([][]Record, b.N)
		for i := range batches {
			batches[i] = batch(runs, i)
		}
		off, err := LoadOffset(ctx, pool, "sluice.events", 0)
		if err != nil {
			b.Fatal(err)
		}
		from := off.Next
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			cur := CursorAfter("sluice.events", from, batches[i][size-1].Msg)
			from = cur.Next
			if err := ApplyNew(ctx, pool, batches[i], cur); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("sluice_apply_2_projections", apply(projections))

	// The baselines: the same rows by one COPY each into a table of the
	// ledger's shape (same key and indexes): built before the clock starts
	// and written by pgx's CopyFrom, as a Go program would; and, as the
	// ceiling, the very bytes ApplyNew sends, encoded before the clock.
	b.Run("raw_copy", func(b *testing.B) {
		runs++
		rows := make([][][]any, b.N)
		for i := range rows {
			recs := batch(runs, i)
			rows[i] = make([][]any, size)
			for j, r := range recs {
				var err error
				if rows[i][j], err = testenv.LedgerRow(r.Event, r.Msg.Partition, r.Msg.Offset); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := pool.CopyFrom(ctx, pgx.Identifier{"raw_events"}, ColumnNames(), pgx.CopyFromRows(rows[i])); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("raw_copy_encoded", func(b *testing.B) {
		runs++
		data := make([][]byte, b.N)
		for i := range data {
			var err error
			if data[i], err = EncodeCopy(batch(runs, i)); err != nil {
				b.Fatal(err)
			}
		}
		conn, err := pool.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Release()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data[i]), CopyStatement("raw_events")); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
	})
}
