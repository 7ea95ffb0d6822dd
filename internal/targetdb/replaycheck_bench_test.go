package targetdb

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/internal/testenv"
)

// BenchmarkReplayCheck measures the replay check over the shop example's v1
// target (one projection, customers) holding SLUICE_BENCH_REPLAY_EVENTS
// ledger events (default 100,000; docs/performance.md reports 1,000,000),
// beside a raw SELECT of the same ledger rows read to the client, as
// events/s, and the process's peak RSS: the check replays chunk by chunk,
// so the client's memory does not grow with the ledger. It also reads the
// target's facts in key order, as the facts check does on each side.
func BenchmarkReplayCheck(b *testing.B) {
	events := testenv.BenchSize(b, "SLUICE_BENCH_REPLAY_EVENTS", 100_000)
	dsn := testenv.Database(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	migration, err := os.ReadFile(shopExample + "/v1/migrations/0001_customers.sql")
	if err != nil {
		b.Fatal(err)
	}
	sql, err := os.ReadFile(shopExample + "/v1/customers.sql")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, string(migration)); err != nil {
		b.Fatal(err)
	}
	// Customer events over 10,000 customers, in log order per partition.
	if _, err := conn.Exec(ctx, `INSERT INTO sluice_events (source, id, type, subject, time, data, kafka_partition, kafka_offset)
		SELECT 'bench', 'e' || i, CASE WHEN i % 3 = 0 THEN 'customer.renamed' ELSE 'customer.email_changed' END,
		       'c' || (i % 10000), now(),
		       CASE WHEN i % 3 = 0 THEN jsonb_build_object('name', 'n' || i) ELSE jsonb_build_object('email', 'e' || i || '@x') END,
		       i % 6, i / 6
		FROM generate_series(0, $1 - 1) i`, events); err != nil {
		b.Fatal(err)
	}
	ps, err := CompileProjections([]Projection{{Name: "customers", Types: []string{"customer.*"}, SQL: string(sql)}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := Rebuild(ctx, conn, ps, "customers", 5000, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatal(err)
	}
	b.Run("raw SELECT of the ledger", func(b *testing.B) {
		for range b.N {
			rows, err := conn.Query(ctx, `SELECT `+batchColumns+` FROM sluice_events ORDER BY kafka_partition, kafka_offset`)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for rows.Next() {
				if _, err := rows.Values(); err != nil {
					b.Fatal(err)
				}
				n++
			}
			rows.Close()
			if n != events {
				b.Fatalf("read %d rows, want %d", n, events)
			}
		}
		b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("facts read in key order", func(b *testing.B) {
		facts, err := os.ReadFile(shopExample + "/v1/facts.sql")
		if err != nil {
			b.Fatal(err)
		}
		for range b.N {
			n := 0
			if err := Facts(ctx, conn, string(facts), func(Fact) error { n++; return nil }); err != nil || n == 0 {
				b.Fatalf("facts: %d rows, %v", n, err)
			}
		}
		b.ReportMetric(peakRSSMiB(), "peak-RSS-MiB")
	})
	b.Run("replay check", func(b *testing.B) {
		for range b.N {
			res, err := ReplayCheck(ctx, conn, ps, 3, 5000, nil)
			if err != nil || !res.Same() || res.Events != int64(events) {
				b.Fatalf("replay check: %+v, %v", res, err)
			}
		}
		b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(peakRSSMiB(), "peak-RSS-MiB")
	})
}

// peakRSSMiB is the process's peak resident set (VmHWM), in MiB.
func peakRSSMiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}
