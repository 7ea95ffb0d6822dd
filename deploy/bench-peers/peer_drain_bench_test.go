//go:build benchpeers

// Package benchpeers measures sluice's applier against a well-known tool
// doing the same job on the same backlog, in the same run: `make
// bench-peers`. It is opt-in (the build tag benchpeers), never part of
// `make test` or `make bench`.
//
//	make bench-peers                         # → .stack/bench-peers.txt
//	SLUICE_BENCH_EVENTS=20000 BENCH_PEERS_COUNT=1 make bench-peers
package benchpeers

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/testenv"
)

const (
	partitions = 6
	// sessions is what each contender may hold on its database: the
	// applier's default apply.max_conns.
	sessions = 2
	// batch and linger are each contender's batches, per partition: the
	// applier's default apply.batch_size and apply.linger.
	batch  = 500
	linger = "20ms"
	// poll is how often the table is counted while a contender drains.
	poll = 50 * time.Millisecond
	// stall is how long a contender may add no row before it is stopped
	// and the benchmark fails (Bento retries a failing insert forever).
	stall = 30 * time.Second
)

// BenchmarkPeerDrain drains one backlog of N events in a 6-partition topic
// with each contender, one op = the whole backlog, timed from the start of
// the contender's process until its table holds N rows:
//
//   - bento: Bento (deploy/bench-peers/bento): kafka_franz in a fresh
//     consumer group, batches of 500 per partition (20 ms linger) →
//     sql_insert, one INSERT … ON CONFLICT (source, id) DO NOTHING per
//     batch, into a fresh database's table shaped as the ledger (LIKE
//     sluice_events INCLUDING ALL: its columns, its key (source, id) and
//     its indexes), on as many sessions as the applier has.
//   - sluice_apply: the sluice binary, `sluice apply` for a fresh target
//     (a fresh migrated database and consumer group) on the same topic,
//     its defaults spelt out where Bento is given the same.
//
// Each line also carries the contender process's CPU time (cpu-s/op, the
// database's not included); each sluice_apply line carries the ratio to
// the median of bento's drain rates in the same run (sluice/bento), after
// a check that both tables hold the same rows. The binaries come from
// SLUICE_PEER_BENTO and SLUICE_PEER_SLUICE (`make bench-peers` sets them);
// without them the benchmark builds them.
func BenchmarkPeerDrain(b *testing.B) {
	cluster := testenv.Kafka(b)
	broker := testenv.Require(b, "SLUICE_TEST_KAFKA")
	bento := bentoBinary(b)
	sluice := sluiceBinary(b)
	events := testenv.BenchSize(b, "SLUICE_BENCH_EVENTS", 100_000)
	topic := testenv.Topic(b, cluster, partitions)
	ctx := context.Background()
	testenv.WriteBacklog(b, cluster, topic, "", events)
	b.Logf("backlog: %d events in %d partitions of %s", events, partitions, topic)

	// Each sub-benchmark runs -count times in a row, on the same backlog;
	// every sluice_apply line is compared with the median of bento's.
	var bentoRates []float64
	var bentoSum string
	b.Run("bento", func(b *testing.B) {
		var cpu time.Duration
		for range b.N {
			b.StopTimer()
			dsn := testenv.Database(b)
			probe := testenv.Conn(b, dsn)
			if _, err := probe.Exec(ctx, `CREATE TABLE bento_events (LIKE sluice_events INCLUDING ALL)`); err != nil {
				b.Fatal(err)
			}
			dir := b.TempDir()
			cfg := filepath.Join(dir, "bento.yaml")
			if err := os.WriteFile(cfg, bentoConfig(broker, topic, "sluice-bench-bento-"+testenv.ID(), dsn), 0o600); err != nil {
				b.Fatal(err)
			}
			cpu += drain(b, exec.Command(bento, "run", cfg), filepath.Join(dir, "bento.log"), probe, "bento_events", events)
			bentoSum = checksum(b, probe, "bento_events")
		}
		rate := float64(b.N*events) / b.Elapsed().Seconds()
		bentoRates = append(bentoRates, rate)
		b.ReportMetric(rate, "events/s")
		b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	})

	b.Run("sluice_apply", func(b *testing.B) {
		var cpu time.Duration
		var sum string
		for range b.N {
			b.StopTimer()
			dsn := testenv.Database(b)
			probe := testenv.Conn(b, dsn)
			target := "bench" + testenv.ID()
			// As in BenchmarkDrain, the topics the applier would create
			// are there before it starts.
			if err := cluster.EnsureTopics(ctx, 1, kafkaadmin.DLQTopicSpec(target), kafkaadmin.ControlTopicSpec(), kafkaadmin.StatusTopicSpec()); err != nil {
				b.Fatal(err)
			}
			dir := b.TempDir()
			cfg := filepath.Join(dir, "sluice.yaml")
			if err := os.WriteFile(cfg, sluiceConfig(broker, topic, target), 0o600); err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command(sluice, "apply", "--config", cfg, "--target", target, "--listen", "127.0.0.1:0")
			cmd.Env = append(os.Environ(), "SLUICE_TARGET_"+strings.ToUpper(target)+"_DSN="+dsn)
			cpu += drain(b, cmd, filepath.Join(dir, "sluice.log"), probe, "sluice_events", events)
			sum = checksum(b, probe, "sluice_events")
		}
		rate := float64(b.N*events) / b.Elapsed().Seconds()
		b.ReportMetric(rate, "events/s")
		b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
		if len(bentoRates) > 0 {
			bentoRate := median(bentoRates)
			if sum != bentoSum {
				b.Fatalf("sluice's ledger and Bento's table differ (checksums %s and %s)", sum, bentoSum)
			}
			b.ReportMetric(rate/bentoRate, "sluice/bento")
			b.Logf("sluice %.0f events/s, bento %.0f events/s (median of %d): %.2f× (the same %d rows in both tables)", rate, bentoRate, len(bentoRates), rate/bentoRate, events)
		}
	})
}

// drain runs cmd with the benchmark timer on, from its start until table
// holds events rows, failing when cmd exits before or adds no row for
// stall. Then it stops cmd (SIGINT, SIGKILL after 20 s), checks that table
// holds exactly events rows and returns cmd's CPU time. cmd's output goes
// to logPath, whose tail is shown when it fails.
func drain(b *testing.B, cmd *exec.Cmd, logPath string, probe *pgx.Conn, table string, events int) time.Duration {
	b.Helper()
	ctx := context.Background()
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	fail := func(format string, args ...any) {
		b.Helper()
		out, _ := os.ReadFile(logPath)
		if len(out) > 4000 {
			out = out[len(out)-4000:]
		}
		b.Fatalf("%s: %s\n--- the end of its output:\n%s", filepath.Base(cmd.Path), fmt.Sprintf(format, args...), out)
	}
	b.StartTimer()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1) // holds cmd's exit once it has exited
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() { // on every path, a failed one too: nothing outlives the benchmark
		select {
		case err := <-exited:
			exited <- err
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	last, progressed := -1, time.Now()
	for {
		var rows int
		if err := probe.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&rows); err != nil {
			b.Fatal(err)
		}
		if rows >= events {
			break
		}
		if rows > last {
			last, progressed = rows, time.Now()
		}
		select {
		case err := <-exited:
			exited <- err
			fail("exited (%v) with %d of %d rows in %s", err, rows, events, table)
		case <-time.After(poll):
		}
		if time.Since(progressed) > stall {
			fail("%d of %d rows in %s, none more for %v", rows, events, table, stall)
		}
	}
	b.StopTimer()
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			fail("stopped with %v", err)
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		fail("did not stop within 20 s of SIGINT")
	}
	var rows int
	if err := probe.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&rows); err != nil || rows != events {
		fail("%s holds %d rows, want %d (%v)", table, rows, events, err)
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// checksum is a digest of every column an event fills in every row of
// table, in key order: two tables with equal checksums hold the same rows.
func checksum(b *testing.B, probe *pgx.Conn, table string) string {
	b.Helper()
	var sum string
	err := probe.QueryRow(context.Background(), `SELECT md5(string_agg(row(source, id, type, subject, time, datacontenttype,
		dataschema, data, data_base64, extensions, kafka_partition, kafka_offset)::text, ',' ORDER BY source, id)) FROM `+table).Scan(&sum)
	if err != nil {
		b.Fatal(err)
	}
	return sum
}

// bentoConfig is Bento's pipeline: the topic from its oldest record in a
// fresh consumer group, batched per partition as the applier batches
// (kafka_franz's own batching, a batch per partition: batching at
// sql_insert instead was never faster in runs on the local stack, mostly
// about half as fast), each event's CloudEvents attributes into the
// ledger's columns as sluice fills them (attributes sluice does not name
// go to extensions), one INSERT per batch on as many sessions as the
// applier has.
func bentoConfig(broker, topic, group, dsn string) []byte {
	return fmt.Appendf(nil, `http:
  enabled: false
logger:
  level: warn
input:
  kafka_franz:
    seed_brokers: [%q]
    topics: [%q]
    consumer_group: %q
    start_from_oldest: true
    batching:
      count: %d
      period: %s
output:
  sql_insert:
    driver: postgres
    dsn: %q
    table: bento_events
    columns: [source, id, type, subject, time, datacontenttype, dataschema, data, data_base64, extensions, kafka_partition, kafka_offset]
    args_mapping: |
      let ext = this.without("specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data", "data_base64")
      root = [
        this.source,
        this.id,
        this.type,
        this.subject,
        this.time,
        this.datacontenttype,
        this.dataschema,
        if this.data != null { this.data.format_json(no_indent: true).string() } else { null },
        if this.data_base64 != null { this.data_base64.decode("base64") } else { null },
        if $ext.length() > 0 { $ext.format_json(no_indent: true).string() } else { null },
        @kafka_partition,
        @kafka_offset,
      ]
    suffix: ON CONFLICT (source, id) DO NOTHING
    conn_max_open: %d
`, broker, topic, group, batch, linger, dsn, sessions)
}

// sluiceConfig is the applier's configuration: the same topic, its
// defaults for everything else, the sessions and batches spelt out as Bento
// is given them. The DSN comes from the environment.
func sluiceConfig(broker, topic, target string) []byte {
	return fmt.Appendf(nil, `kafka:
  brokers: [%q]
  topic: %q
  partitions: %d
apply:
  batch_size: %d
  linger: %s
  max_conns: %d
targets:
  - name: %s
    dsn: set by SLUICE_TARGET_%s_DSN
log:
  level: warn
`, broker, topic, partitions, batch, linger, sessions, target, strings.ToUpper(target))
}

// bentoBinary is SLUICE_PEER_BENTO, else what bento/build builds (or finds
// cached).
func bentoBinary(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("SLUICE_PEER_BENTO"); p != "" {
		return p
	}
	var out bytes.Buffer
	cmd := exec.Command("./bento/build")
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("bento/build: %v", err)
	}
	return strings.TrimSpace(out.String())
}

// sluiceBinary is SLUICE_PEER_SLUICE, else sluice built from this tree.
func sluiceBinary(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("SLUICE_PEER_SLUICE"); p != "" {
		return p
	}
	p := filepath.Join(b.TempDir(), "sluice")
	if out, err := exec.Command("go", "build", "-o", p, "github.com/sluicehq/sluice/cmd/sluice").CombinedOutput(); err != nil {
		b.Fatalf("build sluice: %v\n%s", err, out)
	}
	return p
}
