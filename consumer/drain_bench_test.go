package consumer

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
	"github.com/sluicehq/sluice/internal/testenv"
)

// BenchmarkDrain measures what matters after an outage: how fast a fresh
// target drains a backlog of N events from the log (one op = the whole
// backlog, from start to lag 0), against two baselines in the same run on
// the same records: a raw kafka-go Reader per partition reading the topic
// to its end, and a raw COPY of the same rows into a table of the ledger's
// shape (batches of 500, as many sessions as the applier has; see below).
func BenchmarkDrain(b *testing.B) {
	cluster := testenv.Kafka(b)
	events := testenv.BenchSize(b, "SLUICE_BENCH_EVENTS", 100_000)
	const partitions = 6
	topic := testenv.Topic(b, cluster, partitions)
	ctx := context.Background()
	testenv.WriteBacklog(b, cluster, topic, "", events)
	b.Logf("backlog: %d events in %d partitions of %s", events, partitions, topic)

	b.Run("raw_reader", func(b *testing.B) {
		for range b.N {
			var wg sync.WaitGroup
			var read atomic.Int64
			_, ends, err := cluster.LogBounds(ctx, topic)
			if err != nil {
				b.Fatal(err)
			}
			for p := range partitions {
				wg.Go(func() {
					r := cluster.NewReader(kafkaadmin.ReaderConfig{Topic: topic, Partition: p, MaxBytes: 8 << 20, QueueCapacity: 500})
					defer r.Close()
					for {
						m, err := r.FetchMessage(ctx)
						if err != nil {
							b.Error(err)
							return
						}
						read.Add(1)
						if m.Offset == ends[p]-1 {
							return
						}
					}
				})
			}
			wg.Wait()
			if int(read.Load()) != events {
				b.Fatalf("read %d of %d", read.Load(), events)
			}
		}
		b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
	})

	// The baselines: the same rows by COPY in batches of 500, on as many
	// sessions as the applier has, into a table of the ledger's shape (its
	// key and indexes): rows built before the clock starts and written by
	// pgx's CopyFrom, as a Go program would; and, as the ceiling, the very
	// bytes the applier sends, encoded before the clock starts.
	rows := make([][]any, events)
	encoded := make([][]byte, 0, events/500+1)
	for from := 0; from < events; from += 500 {
		recs := make([]targetdb.Record, 0, 500)
		for i := from; i < min(from+500, events); i++ {
			rec := targetdb.Decode(kafka.Message{Topic: topic, Partition: i % partitions, Offset: int64(i), Value: testenv.BenchEvent("", i)})
			row, err := testenv.LedgerRow(rec.Event, rec.Msg.Partition, rec.Msg.Offset)
			if err != nil {
				b.Fatal(err)
			}
			rows[i], recs = row, append(recs, rec)
		}
		data, err := targetdb.EncodeCopy(recs)
		if err != nil {
			b.Fatal(err)
		}
		encoded = append(encoded, data)
	}
	rawCopy := func(copyBatch func(conn *pgx.Conn, i int) error, batches int) func(b *testing.B) {
		return func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				dsn := testenv.Database(b)
				pool, err := pgxpool.New(ctx, dsn)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := pool.Exec(ctx, `CREATE TABLE raw_events (LIKE sluice_events INCLUDING ALL)`); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				var next atomic.Int64
				var wg sync.WaitGroup
				for range 2 { // the applier's default sessions per target
					wg.Go(func() {
						conn, err := pool.Acquire(ctx)
						if err != nil {
							b.Error(err)
							return
						}
						defer conn.Release()
						for i := int(next.Add(1)) - 1; i < batches; i = int(next.Add(1)) - 1 {
							if err := copyBatch(conn.Conn(), i); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				pool.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
		}
	}
	b.Run("raw_copy", rawCopy(func(conn *pgx.Conn, i int) error {
		_, err := conn.CopyFrom(ctx, pgx.Identifier{"raw_events"}, targetdb.ColumnNames(), pgx.CopyFromRows(rows[i*500:min(i*500+500, events)]))
		return err
	}, len(encoded)))
	b.Run("raw_copy_encoded", rawCopy(func(conn *pgx.Conn, i int) error {
		_, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(encoded[i]), targetdb.CopyStatement("raw_events"))
		return err
	}, len(encoded)))

	drain := func(projections []targetdb.Projection, tables string) func(b *testing.B) {
		return func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				dsn := testenv.Database(b)
				target := "bench" + testenv.ID()
				if err := cluster.EnsureTopics(ctx, 1, kafkaadmin.DLQTopicSpec(target), kafkaadmin.ControlTopicSpec(), kafkaadmin.StatusTopicSpec()); err != nil {
					b.Fatal(err)
				}
				probe := testenv.Conn(b, dsn)
				if tables != "" {
					if _, err := probe.Exec(ctx, tables); err != nil {
						b.Fatal(err)
					}
				}
				a, err := New(Config{Target: target, Cluster: cluster, Topic: topic, DSN: dsn, Projections: projections, Logger: benchLogger()})
				if err != nil {
					b.Fatal(err)
				}
				rctx, stop := context.WithCancel(ctx)
				done := make(chan error, 1)
				b.StartTimer()
				go func() { done <- a.Run(rctx) }()
				for {
					var applied int64
					if err := probe.QueryRow(ctx, `SELECT coalesce(sum(next_offset), 0) FROM sluice_offsets WHERE topic = $1`, topic).Scan(&applied); err != nil {
						b.Fatal(err)
					}
					if int(applied) >= events {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				b.StopTimer()
				stop()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				var rows int
				if err := probe.QueryRow(ctx, `SELECT count(*) FROM sluice_events`).Scan(&rows); err != nil || rows != events {
					b.Fatalf("the target holds %d rows, want %d (%v)", rows, events, err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
		}
	}
	b.Run("sluice_apply", drain(nil, ""))
	// The same drain into a target that also keeps two tables of its own,
	// of the kinds deploy/examples/shop ships: a latest state per subject,
	// and an append-only history.
	b.Run("sluice_apply_2_projections", drain([]targetdb.Projection{
		{Name: "latest", Types: []string{"bench.*"}, SQL: `INSERT INTO bench_latest AS l (subject, amount, changes)
			SELECT subject, (array_agg((data->>'amount')::int ORDER BY kafka_offset DESC))[1], count(*) FROM batch GROUP BY subject
			ON CONFLICT (subject) DO UPDATE SET amount = EXCLUDED.amount, changes = l.changes + EXCLUDED.changes`},
		{Name: "history", SQL: `INSERT INTO bench_history SELECT id, subject, (data->>'amount')::int FROM batch`},
	}, `CREATE TABLE bench_latest (subject text PRIMARY KEY, amount int, changes bigint);
		CREATE TABLE bench_history (id text, subject text, amount int)`))
}

// benchLogger shows the applier's own log when SLUICE_BENCH_LOG is set.
func benchLogger() *slog.Logger {
	if os.Getenv("SLUICE_BENCH_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
