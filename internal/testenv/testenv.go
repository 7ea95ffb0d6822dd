// Package testenv gives layer tests the real services of deploy/local: a
// Kafka cluster, fresh topics, and fresh, migrated databases on PostgreSQL
// cluster A. It is imported only by tests.
//
// The services are found through the environment variables that `make test`
// sets (see `deploy/local/stack env`): SLUICE_TEST_KAFKA and
// SLUICE_TEST_PG_A. Without them a test skips, naming the variable; with
// CI=true a missing variable fails it instead. With -short (`make unit`)
// every test that needs them skips.
//
//	cluster := testenv.Kafka(t)
//	topic := testenv.Topic(t, cluster, 3)
//	dsn := testenv.Database(t) // migrated to the latest schema, dropped after the test
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/schema"
)

// Require returns the value of the environment variable name, skipping the
// test (failing it under CI=true) when it is not set.
func Require(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the local stack: not run with -short (`make layer` runs it)")
	}
	v := os.Getenv(name)
	if v == "" {
		msg := name + " is not set: run `make test`, or `eval \"$(deploy/local/stack env)\"` after `make up`"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return v
}

// ID returns a short random id, for names that must not collide.
func ID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Kafka returns a Cluster on the local broker, closed after the test.
func Kafka(t testing.TB) *kafkaadmin.Cluster {
	t.Helper()
	c := kafkaadmin.New(kafkaadmin.Config{Brokers: []string{Require(t, "SLUICE_TEST_KAFKA")}})
	t.Cleanup(c.Close)
	return c
}

// Topic creates a fresh events topic with the given partitions, and returns
// its name.
func Topic(t testing.TB, c *kafkaadmin.Cluster, partitions int) string {
	t.Helper()
	name := "sluice.test." + ID()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.EnsureTopics(ctx, 1, kafkaadmin.EventsTopicSpec(name, partitions, time.Hour)); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	return name
}

// Database creates a fresh database on PostgreSQL cluster A, migrated to the
// latest schema, dropped (with its sessions) after the test; it returns its
// DSN.
func Database(t testing.TB) string {
	t.Helper()
	base := Require(t, "SLUICE_TEST_PG_A")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", "SLUICE_TEST_PG_A", err)
	}
	defer admin.Close(context.Background())
	name := "sluice_test_" + ID()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, base); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	cc, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("postgres://%s:%s@%s:%d/%s", cc.User, cc.Password, cc.Host, cc.Port, name)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := schema.Migrate(ctx, conn, schema.LatestVersion(), schema.MigrateOptions{}); err != nil {
		t.Fatalf("migrate %s: %v", name, err)
	}
	return dsn
}

// Conn opens a session on dsn, closed after the test.
func Conn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Event returns the JSON of a valid event with the given source and id.
func Event(source, id string) []byte {
	return fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":%q,"type":"test.v1","subject":"s-%s","data":{"n":1}}`, id, source, id)
}

// Poison returns the JSON of a valid event that a database prepared with
// RefusePoison refuses (CHECK violation, SQLSTATE 23514): the event's fault,
// never the database's.
func Poison(source, id string) []byte {
	return fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":%q,"type":"test.v1","data":{"poison":true}}`, id, source)
}

// RefusePoison makes the ledger of dsn refuse the events Poison makes.
func RefusePoison(t testing.TB, dsn string) {
	t.Helper()
	_, err := Conn(t, dsn).Exec(context.Background(),
		`ALTER TABLE sluice_events ADD CONSTRAINT sluice_test_no_poison CHECK (data->>'poison' IS NULL)`)
	if err != nil {
		t.Fatal(err)
	}
}

// AsApplication returns dsn for the stack's application role (the DSN's
// user with "_app" appended: a login that is not a superuser and may not
// end other roles' sessions), after granting it every privilege on the
// database's tables: it plays the application whose sessions stall a
// target.
func AsApplication(t testing.TB, dsn string) string {
	t.Helper()
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	role := cc.User + "_app"
	owner := Conn(t, dsn)
	if _, err := owner.Exec(context.Background(), "GRANT ALL ON ALL TABLES IN SCHEMA public TO "+role); err != nil {
		t.Fatalf("grant to %s: %v (does the stack create the role? make up)", role, err)
	}
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s", role, cc.Password, cc.Host, cc.Port, cc.Database)
}

// handedOut holds every address FreeAddr returned in this process.
var handedOut struct {
	sync.Mutex
	addrs map[string]bool
}

// FreeAddr returns a loopback address no one listens on now, for a process
// the test starts. The kernel may offer a port it offered a moment ago,
// before the process given it binds it (two replicas started at once were
// given one port): FreeAddr never returns an address twice.
func FreeAddr(t testing.TB) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.addrs == nil {
		handedOut.addrs = map[string]bool{}
	}
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
	t.Fatal("no loopback port that was not handed out already in 100 tries")
	return ""
}

// ConnAs opens a session on dsn named application in pg_stat_activity,
// closed after the test: a stand-in for another program's session.
func ConnAs(t testing.TB, dsn, application string) *pgx.Conn {
	t.Helper()
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cc.RuntimeParams["application_name"] = application
	conn, err := pgx.ConnectConfig(context.Background(), cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// LedgerRow is ev's ledger row in the order of targetdb.ColumnNames, as a
// Go program would hand it to pgx's CopyFrom: the benchmarks' raw COPY
// baseline, built without the applier's code.
func LedgerRow(ev schema.Event, partition int, offset int64) ([]any, error) {
	text := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	var when, data, dataBase64, ext any
	if !ev.Time.IsZero() {
		when = ev.Time
	}
	if ev.Data != nil {
		data = []byte(ev.Data)
	}
	if ev.DataBase64 != nil {
		dataBase64 = ev.DataBase64
	}
	if ev.Extensions != nil {
		b, err := json.Marshal(ev.Extensions)
		if err != nil {
			return nil, err
		}
		ext = b
	}
	return []any{ev.Source, ev.ID, ev.Type, text(ev.Subject), when, text(ev.DataContentType), text(ev.DataSchema),
		data, dataBase64, ext, int32(partition), offset}, nil
}

// BenchEvent is the benchmarks' event i: a typical small one, the size and
// shape the incident's metadata writes had. idPrefix keeps the ids of one
// run apart from another's ("" for none).
func BenchEvent(idPrefix string, i int) []byte {
	return fmt.Appendf(nil, `{"specversion":"1.0","id":"%s%d","source":"bench/drain","type":"bench.v1","subject":"customer-%d","time":"2025-05-09T14:00:00Z","data":{"amount":%d,"note":"a typical small payload"}}`,
		idPrefix, i, i%997, i)
}

// BenchSize is a benchmark's size from the environment variable name, else
// def; anything but a positive integer there fails tb.
func BenchSize(tb testing.TB, name string, def int) int {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// WriteBacklog appends BenchEvent(idPrefix, 0…events−1) to topic, keyed by
// subject, in chunks of 5,000 from a few writers at once: a synchronous
// writer would otherwise wait out a round trip per chunk.
func WriteBacklog(tb testing.TB, cluster *kafkaadmin.Cluster, topic, idPrefix string, events int) {
	tb.Helper()
	w := cluster.NewWriter(kafkaadmin.WriterConfig{Topic: topic, BatchSize: 5000, Linger: 10 * time.Millisecond})
	defer w.Close()
	const chunk = 5000
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for range 4 {
		wg.Go(func() {
			msgs := make([]kafka.Message, 0, chunk)
			for from := int(next.Add(chunk)) - chunk; from < events && failed.Load() == nil; from = int(next.Add(chunk)) - chunk {
				msgs = msgs[:0]
				for i := from; i < min(from+chunk, events); i++ {
					msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "customer-%d", i%997), Value: BenchEvent(idPrefix, i)})
				}
				if err := w.WriteMessages(context.Background(), msgs...); err != nil {
					failed.Store(&err)
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		tb.Fatalf("producing the backlog of %s: %v", topic, *err)
	}
}
