package consumer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/control"
	"github.com/sluicehq/sluice/internal/deadletter"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
	"github.com/sluicehq/sluice/internal/testenv"
)

// These tests drive the applier's parts — the batch bisection, the
// partition worker's state machine — against the real Kafka and PostgreSQL
// of deploy/local, without the built binary: each runs in seconds.

// testApplier is an Applier on a fresh database and a fresh one-partition
// topic, with its DLQ topic created.
type testApplier struct {
	*Applier
	t       *testing.T
	cluster *kafkaadmin.Cluster
	topic   string
	dsn     string
	db      *pgx.Conn
}

func newTestApplier(t *testing.T, tune func(*Config)) *testApplier {
	t.Helper()
	cluster := testenv.Kafka(t)
	dsn := testenv.Database(t)
	topic := testenv.Topic(t, cluster, 1)
	cfg := Config{
		Target: "t" + testenv.ID(), Cluster: cluster, Topic: topic, DSN: dsn,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		BreakerMinOpen: 200 * time.Millisecond, BreakerMaxOpen: 400 * time.Millisecond,
		LockTimeout: 300 * time.Millisecond, ApplyTimeout: 3 * time.Second,
	}
	if tune != nil {
		tune(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cluster.EnsureTopics(ctx, 1, kafkaadmin.DLQTopicSpec(cfg.Target), kafkaadmin.ControlTopicSpec(), kafkaadmin.StatusTopicSpec()); err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.dlq.Close(); a.plane.Close(); a.pool.Close() })
	return &testApplier{Applier: a, t: t, cluster: cluster, topic: topic, dsn: dsn, db: testenv.Conn(t, dsn)}
}

// records builds in-memory records at offsets 0..len(kinds)-1 of partition 0:
// "ok" a valid event, "poison" one the database refuses, "garbage" one that
// does not decode.
func (ta *testApplier) records(kinds ...string) []targetdb.Record {
	recs := make([]targetdb.Record, len(kinds))
	for i, k := range kinds {
		v := testenv.Event("src", fmt.Sprint(i))
		switch k {
		case "poison":
			v = testenv.Poison("src", fmt.Sprint(i))
		case "garbage":
			v = []byte(`{"not":"an event"`)
		}
		recs[i] = targetdb.Decode(kafka.Message{Topic: ta.topic, Partition: 0, Offset: int64(i), Value: v})
	}
	return recs
}

func (ta *testApplier) ledgerIDs() map[string]bool {
	ta.t.Helper()
	rows, err := ta.db.Query(context.Background(), `SELECT id FROM sluice_events`)
	if err != nil {
		ta.t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		ta.t.Fatal(err)
	}
	out := map[string]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out
}

func (ta *testApplier) nextOffset() int64 {
	ta.t.Helper()
	o, err := targetdb.LoadOffset(context.Background(), ta.db, ta.topic, 0)
	if err != nil {
		ta.t.Fatal(err)
	}
	if !o.Found {
		return -1
	}
	return o.Next
}

func (ta *testApplier) deadLetters() []deadletter.Letter {
	ta.t.Helper()
	var out []deadletter.Letter
	err := ta.cluster.ReadToEnd(context.Background(), kafkaadmin.DLQTopic(ta.cfg.Target), 0, func(m kafka.Message) {
		out = append(out, deadletter.Parse(m))
	})
	if err != nil {
		ta.t.Fatal(err)
	}
	return out
}

func TestBisectionIsolatesExactlyThePoisonedEvents(t *testing.T) {
	cases := []struct {
		name  string
		kinds []string
	}{
		{"a poison event first in the batch", []string{"poison", "ok", "ok", "ok", "ok", "ok", "ok"}},
		{"a poison event in the middle", []string{"ok", "ok", "ok", "poison", "ok", "ok", "ok"}},
		{"a poison event last", []string{"ok", "ok", "ok", "ok", "ok", "ok", "poison"}},
		{"two poison events apart", []string{"ok", "poison", "ok", "ok", "ok", "poison", "ok", "ok"}},
		{"two poison events side by side", []string{"ok", "ok", "poison", "poison", "ok"}},
		{"every event poisoned", []string{"poison", "poison", "poison", "poison"}},
		{"an undecodable record among good ones", []string{"ok", "garbage", "ok", "poison", "ok"}},
		{"a lone poison event", []string{"poison"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ta := newTestApplier(t, nil)
			testenv.RefusePoison(t, ta.dsn)
			recs := ta.records(c.kinds...)
			var prog progress
			if err := ta.applySpan(context.Background(), recs, &prog); err != nil {
				t.Fatalf("applySpan: %v", err)
			}
			if prog.done != len(recs) {
				t.Errorf("progress %d of %d records", prog.done, len(recs))
			}
			ids := ta.ledgerIDs()
			wantDead := map[int64]bool{}
			for i, k := range c.kinds {
				if k == "ok" && !ids[fmt.Sprint(i)] {
					t.Errorf("good event %d is not in the ledger", i)
				}
				if k != "ok" {
					wantDead[int64(i)] = true
					if ids[fmt.Sprint(i)] {
						t.Errorf("%s event %d is in the ledger", k, i)
					}
				}
			}
			letters := ta.deadLetters()
			if len(letters) != len(wantDead) {
				t.Errorf("%d dead letters, want %d (one per bad event)", len(letters), len(wantDead))
			}
			for _, l := range letters {
				if !wantDead[l.OriginalOffset] {
					t.Errorf("offset %d was dead-lettered but is good, or twice (error %q)", l.OriginalOffset, l.Error)
				}
				delete(wantDead, l.OriginalOffset)
			}
			if len(wantDead) != 0 {
				t.Errorf("offsets %v were never dead-lettered", wantDead)
			}
			if next := ta.nextOffset(); next != int64(len(recs)) {
				t.Errorf("offsets row at %d after the batch, want %d", next, len(recs))
			}
			if st := ta.breaker.State(); st != BreakerClosed {
				t.Errorf("breaker %v: poison events are not the database's fault", st)
			}
		})
	}
}

// TestAPoisonEventIsDeadLetteredOnceWhenTheRestOfItsBatchFailsRetryably:
// a record that does not decode goes to the DLQ without the database; then
// the events after it fail on a lock. The batch is abandoned and
// fetched again from the target's position (a pause, a restart): the
// poison event must not go to the DLQ a second time.
func TestAPoisonEventIsDeadLetteredOnceWhenTheRestOfItsBatchFailsRetryably(t *testing.T) {
	ta := newTestApplier(t, nil)
	testenv.RefusePoison(t, ta.dsn)
	ctx := context.Background()
	if _, err := ta.db.Exec(ctx, `
		CREATE FUNCTION sluice_test_locked() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.id = '3' THEN RAISE EXCEPTION 'row 3 is locked' USING ERRCODE = '55P03'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER sluice_test_locked BEFORE INSERT ON sluice_events FOR EACH ROW EXECUTE FUNCTION sluice_test_locked()`); err != nil {
		t.Fatal(err)
	}
	recs := ta.records("ok", "ok", "garbage", "ok", "ok")
	prog := progress{next: -1}
	if err := ta.applySpan(ctx, recs, &prog); err == nil || targetdb.Classify(err) != targetdb.Retryable {
		t.Fatalf("applySpan: %v, want the retryable failure of the events after the poison one", err)
	}
	// The batch is fetched again from the target's own position.
	from := ta.nextOffset()
	if from != 3 {
		t.Errorf("the target's position is %d after the poison event at 2 was dead-lettered, want 3", from)
	}
	if _, err := ta.db.Exec(ctx, `DROP TRIGGER sluice_test_locked ON sluice_events`); err != nil {
		t.Fatal(err)
	}
	again := progress{next: from}
	if err := ta.applySpan(ctx, recs[from:], &again); err != nil {
		t.Fatal(err)
	}
	letters := 0
	for _, l := range ta.deadLetters() {
		if l.OriginalOffset != 2 {
			t.Errorf("offset %d was dead-lettered", l.OriginalOffset)
		}
		letters++
	}
	if letters != 1 || ta.nextOffset() != 5 || len(ta.ledgerIDs()) != 4 {
		t.Errorf("%d dead letters for the poison event (want 1), position %d (want 5), %d events in the ledger (want 4)",
			letters, ta.nextOffset(), len(ta.ledgerIDs()))
	}
}

// fakeGeneration stands for a kafka.Generation: its context reports
// kafka.ErrGenerationEnded once ended, as kafka-go's does, and it records
// the group commits.
type fakeGeneration struct {
	ended chan struct{}
	once  sync.Once
	mu    sync.Mutex
	last  int64
}

func newFakeGeneration() *fakeGeneration {
	return &fakeGeneration{ended: make(chan struct{}), last: -1}
}

func (g *fakeGeneration) end() { g.once.Do(func() { close(g.ended) }) }

func (g *fakeGeneration) CommitOffsets(m map[string]map[int]int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, parts := range m {
		for _, off := range parts {
			g.last = off
		}
	}
	return nil
}

type generationCtx struct {
	context.Context
	g *fakeGeneration
}

func (c generationCtx) Done() <-chan struct{} { return c.g.ended }
func (c generationCtx) Err() error {
	select {
	case <-c.g.ended:
		return kafka.ErrGenerationEnded
	default:
		return nil
	}
}

// startWorker runs partition 0's worker for a fresh generation; the
// returned function ends the generation and waits for the worker.
func (ta *testApplier) startWorker() (*fakeGeneration, func() time.Duration) {
	return ta.startWorkerWithGroupAt(kafka.FirstOffset)
}

// startWorkerWithGroupAt is startWorker for a consumer group that committed
// groupOffset.
func (ta *testApplier) startWorkerWithGroupAt(groupOffset int64) (*fakeGeneration, func() time.Duration) {
	g := newFakeGeneration()
	done := make(chan struct{})
	go func() {
		defer close(done)
		ta.runPartition(generationCtx{Context: context.Background(), g: g}, g, 0, groupOffset)
	}()
	stop := func() time.Duration {
		began := time.Now()
		g.end()
		select {
		case <-done:
		case <-time.After(2 * ta.cfg.ApplyTimeout):
			ta.t.Fatal("the worker did not stop after its generation ended")
		}
		return time.Since(began)
	}
	ta.t.Cleanup(func() { stop() })
	return g, stop
}

func (ta *testApplier) publish(n, from int) {
	ta.t.Helper()
	w := ta.cluster.NewWriter(kafkaadmin.WriterConfig{Topic: ta.topic})
	defer w.Close()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte("k"), Value: testenv.Event("src", fmt.Sprint(from+i))}
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		ta.t.Fatal(err)
	}
}

// eventually polls cond every 20ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (ta *testApplier) rowCount() int {
	var n int
	if err := ta.db.QueryRow(context.Background(), `SELECT count(*) FROM sluice_events`).Scan(&n); err != nil {
		ta.t.Fatal(err)
	}
	return n
}

func TestAWorkerAppliesThePartitionFromTheStart(t *testing.T) {
	ta := newTestApplier(t, nil)
	ta.publish(300, 0)
	g, _ := ta.startWorker()
	eventually(t, 10*time.Second, "300 events applied", func() bool { return ta.nextOffset() == 300 })
	if n := ta.rowCount(); n != 300 {
		t.Fatalf("%d rows, want 300", n)
	}
	eventually(t, 2*time.Second, "group offset committed", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.last == 300 })
}

// slowInserts makes every insert into the ledger sleep seconds, for each
// STATEMENT or each ROW: a database that works, slowly.
func (ta *testApplier) slowInserts(each string, seconds float64) {
	ta.t.Helper()
	_, err := ta.db.Exec(context.Background(), fmt.Sprintf(`
		CREATE FUNCTION sluice_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(%g); RETURN NULL; END $$;
		CREATE TRIGGER sluice_test_slow AFTER INSERT ON sluice_events FOR EACH %s EXECUTE FUNCTION sluice_test_slow()`, seconds, each))
	if err != nil {
		ta.t.Fatal(err)
	}
}

func TestPauseStopsAWorkerAndLeavesNoSession(t *testing.T) {
	ta := newTestApplier(t, func(c *Config) { c.BatchSize = 20 })
	// A slow trigger makes each batch take a while, so the pause lands mid-batch.
	ta.slowInserts("STATEMENT", 0.05)
	ta.publish(400, 0)
	ta.startWorker()
	eventually(t, 10*time.Second, "applying started", func() bool { return ta.nextOffset() > 0 })
	ta.obey(control.DesiredState{Paused: true, By: "test"})
	time.Sleep(300 * time.Millisecond) // the batch under way may finish
	held := ta.nextOffset()
	time.Sleep(time.Second)
	if now := ta.nextOffset(); now != held {
		t.Fatalf("a paused worker applied on: offsets %d → %d", held, now)
	}
	if held >= 400 {
		t.Fatal("everything was applied before the pause; the test proves nothing")
	}
	if st := ta.pool.Stat(); st.AcquiredConns() != 0 {
		t.Fatalf("a paused applier holds %d sessions", st.AcquiredConns())
	}
	var open int
	err := ta.db.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE application_name = $1 AND state LIKE 'idle in transaction%'`, kafkaadmin.GroupID(ta.cfg.Target)).Scan(&open)
	if err != nil || open != 0 {
		t.Fatalf("%d sessions idle in transaction while paused (%v)", open, err)
	}
	ta.obey(control.DesiredState{Paused: false, By: "test"})
	eventually(t, 20*time.Second, "all 400 applied after resume", func() bool { return ta.nextOffset() == 400 })
	if n := ta.rowCount(); n != 400 {
		t.Fatalf("%d rows after resume, want 400", n)
	}
}

func TestARewindWaitsOutAnOpenBreakerThenReplaysOnce(t *testing.T) {
	ta := newTestApplier(t, nil)
	ta.publish(50, 0)
	ta.startWorker()
	eventually(t, 10*time.Second, "50 applied", func() bool { return ta.nextOffset() == 50 })

	// Open the breaker with the database's own refusals, then ask for a rewind.
	for range ta.cfg.TripAfter {
		_ = ta.breaker.do(func() error { return errLocked })
	}
	if ta.breaker.State() != BreakerOpen {
		t.Fatalf("breaker %v, want open", ta.breaker.State())
	}
	rw := &control.Rewind{ID: "rw-" + testenv.ID(), Offsets: map[int]int64{0: 10}, RequestedAt: time.Now()}
	ta.obey(control.DesiredState{Rewind: rw, By: "test"})
	eventually(t, 10*time.Second, "rewind recorded", func() bool {
		o, err := targetdb.LoadOffset(context.Background(), ta.db, ta.topic, 0)
		return err == nil && o.RewindID == rw.ID
	})
	eventually(t, 10*time.Second, "caught up again", func() bool { return ta.nextOffset() == 50 })
	if n := ta.rowCount(); n != 50 {
		t.Fatalf("%d rows after the replay, want 50 (idempotent)", n)
	}
	// A second sight of the same rewind (a broker restart re-reads the
	// control topic) must not move the partition again.
	ta.publish(5, 50)
	eventually(t, 10*time.Second, "new events applied", func() bool { return ta.nextOffset() == 55 })
	ta.obey(control.DesiredState{Rewind: rw, By: "test", Paused: false})
	time.Sleep(500 * time.Millisecond)
	if next := ta.nextOffset(); next != 55 {
		t.Fatalf("the same rewind moved the partition again: offsets row at %d", next)
	}
}

func TestAGenerationEndingMidBatchStopsTheWorkerWithoutTrippingTheBreaker(t *testing.T) {
	ta := newTestApplier(t, func(c *Config) { c.TripAfter = 1 })
	ta.publish(100, 0)
	// Hold a lock on the ledger: the worker's batch waits on it.
	lock, err := ta.db.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(context.Background())
	if _, err := lock.Exec(context.Background(), `LOCK TABLE sluice_events IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	_, stop := ta.startWorker()
	time.Sleep(100 * time.Millisecond)
	took := stop()
	if took > ta.cfg.ApplyTimeout+time.Second {
		t.Errorf("the worker took %v to stop; a batch is bounded by ApplyTimeout (%v)", took, ta.cfg.ApplyTimeout)
	}
	_ = lock.Rollback(context.Background())
	if next := ta.nextOffset(); next > 0 {
		if n := ta.rowCount(); int64(n) != next {
			t.Fatalf("offsets row at %d but %d rows: offsets and ledger disagree", next, n)
		}
	}
	// The only failures were the lock's (retryable, TripAfter 1 may open the
	// breaker): what must not happen is the generation's end counting as one.
	ta2 := newTestApplier(t, func(c *Config) { c.TripAfter = 1 })
	ta2.publish(10, 0)
	_, stop2 := ta2.startWorker()
	eventually(t, 10*time.Second, "10 applied", func() bool { return ta2.nextOffset() == 10 })
	stop2()
	if st := ta2.breaker.State(); st != BreakerClosed {
		t.Fatalf("breaker %v after a generation ended on a healthy target", st)
	}
}

// TestANewDatabaseUnderAnOldTargetNameStartsAtTheLogStart: the group's
// committed offset belongs to whatever database last had the name; a new
// or emptied database that started there would silently skip the log
// before it.
func TestANewDatabaseUnderAnOldTargetNameStartsAtTheLogStart(t *testing.T) {
	ta := newTestApplier(t, nil)
	ta.publish(120, 0)
	ta.startWorkerWithGroupAt(120) // the old database's applier had applied everything
	eventually(t, 10*time.Second, "the 120 events before the group's offset applied", func() bool { return ta.nextOffset() == 120 })
	if n := ta.rowCount(); n != 120 {
		t.Fatalf("%d rows, want 120", n)
	}
}

func TestAFreshTargetStartsAtTheLogStartNotAtKafkaGosSentinel(t *testing.T) {
	ta := newTestApplier(t, nil)
	ta.publish(3, 0)
	w := &partitionWorker{d: ta.workerDeps(), id: 0, log: ta.log}
	for _, c := range []struct {
		name     string
		in, want int64
	}{
		{"FirstOffset (-2) is the log start", kafka.FirstOffset, 0},
		{"LastOffset (-1) is the log end", kafka.LastOffset, 3},
		{"a real offset stays", 2, 2},
	} {
		got, ok := w.resolveSentinel(context.Background(), c.in)
		if !ok || got != c.want {
			t.Errorf("%s: got %d (%v), want %d", c.name, got, ok, c.want)
		}
	}
}

func TestLagAndAnOpenBreakerShowWhileTheTargetIsDownAtStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	ta := newTestApplier(t, func(c *Config) {
		c.DSN = "postgres://sluice:sluice@127.0.0.1:1/nowhere?connect_timeout=1"
		c.LagInterval = 200 * time.Millisecond
		c.Registerer = reg
	})
	ta.publish(20, 0)
	time.Sleep(1100 * time.Millisecond) // the oldest unapplied record is over a second old
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- ta.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, 10*time.Second, "lag_seconds over 1s while the target is down", func() bool {
		return testutil.ToFloat64(ta.m.lagSeconds) > 1
	})
	eventually(t, 10*time.Second, "breaker gauge open while the target is down", func() bool {
		return testutil.ToFloat64(ta.m.breakerState) == float64(BreakerOpen)
	})
	st := ta.report.status()
	if st.LastError == "" || st.Breaker != "open" {
		t.Errorf("published status %+v: want the open breaker and the connection error", st)
	}
}

// An event just under ingest's 1 MiB limit that the target refuses must
// reach the DLQ whole (with its headers it is over 1 MiB) and the
// partition must move on: it once stalled forever on MessageTooLarge.
func TestAnOversizedPoisonEventIsDeadLetteredAndThePartitionMovesOn(t *testing.T) {
	ta := newTestApplier(t, nil)
	testenv.RefusePoison(t, ta.dsn)
	pad := strings.Repeat("x", 1_048_300-100)
	big := fmt.Appendf(nil, `{"specversion":"1.0","id":"big","source":"src","type":"test.v1","data":{"poison":true,"pad":%q}}`, pad)
	recs := ta.records("ok", "ok")
	recs = append(recs, targetdb.Decode(kafka.Message{Topic: ta.topic, Offset: 2, Value: big}))
	var prog progress
	if err := ta.applySpan(context.Background(), recs, &prog); err != nil {
		t.Fatalf("applySpan: %v", err)
	}
	letters := ta.deadLetters()
	if len(letters) != 1 || letters[0].OriginalOffset != 2 || letters[0].ID != "big" {
		t.Fatalf("dead letters %+v, want the big event whole", letters)
	}
	if next := ta.nextOffset(); next != 3 {
		t.Fatalf("offsets row at %d, want 3", next)
	}
}

// A database that works but slowly (a heavy trigger) must still get
// events: the batch shrinks until it fits in statement_timeout, instead of
// the same too-big batch being retried forever.
func TestASlowDatabaseStillMakesProgress(t *testing.T) {
	ta := newTestApplier(t, func(c *Config) {
		c.BatchSize = 400
		c.StatementTimeout = time.Second
		c.TripAfter = 100 // this test is about the batch size, not the breaker
	})
	ta.slowInserts("ROW", 0.005)
	ta.publish(400, 0) // 400 rows × 5 ms = 2 s: a whole batch can never fit in 1 s
	ta.startWorker()
	eventually(t, 30*time.Second, "all 400 applied through smaller batches", func() bool { return ta.nextOffset() == 400 })
	if l := ta.report.status().BatchLimit; l >= 400 {
		t.Errorf("batch limit %d after timeouts, want it shrunk", l)
	}
	if n := ta.rowCount(); n != 400 {
		t.Fatalf("%d rows, want 400", n)
	}
}

// The events topic was deleted and created again: the target's recorded
// position lies beyond the new log's end. Applying on would skip the new
// log's first events without a word; the partition must stop, say so, and
// resume from where an operator's rewind puts it.
func TestATargetAheadOfARecreatedLogStopsUntilRewound(t *testing.T) {
	ta := newTestApplier(t, func(c *Config) { c.LagInterval = 100 * time.Millisecond; c.aheadGrace = 500 * time.Millisecond })
	if err := targetdb.Advance(context.Background(), ta.pool, targetdb.Cursor{Topic: ta.topic, Partition: 0, Next: 1000}); err != nil {
		t.Fatal(err)
	}
	ta.publish(5, 0)
	ta.joined.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	monitorDone := make(chan struct{})
	go func() { defer close(monitorDone); ta.monitorLag(ctx) }()
	defer func() { cancel(); <-monitorDone }()
	ta.startWorker()
	eventually(t, 5*time.Second, "the partition reported ahead of the log", func() bool {
		return testutil.ToFloat64(ta.m.aheadOfLog) == 1
	})
	if st := ta.report.status(); len(st.AheadOfLog) != 1 || st.AheadOfLog[0] != 0 {
		t.Errorf("published status says ahead of log: %v, want [0]", st.AheadOfLog)
	}
	ta.publish(1000, 5) // the new log grows past the old position: still nothing may be applied
	time.Sleep(time.Second)
	if n := ta.rowCount(); n != 0 {
		t.Fatalf("%d rows applied while the target was ahead of the log", n)
	}
	rw := &control.Rewind{ID: "20991231T000000.000000000Z-" + testenv.ID(), Offsets: map[int]int64{0: 0}}
	ta.obey(control.DesiredState{Rewind: rw, By: "test"})
	eventually(t, 20*time.Second, "all 1005 events of the new log applied after the rewind", func() bool { return ta.rowCount() == 1005 })
	eventually(t, 5*time.Second, "the ahead-of-log gauge back at 0 after the rewind", func() bool {
		return testutil.ToFloat64(ta.m.aheadOfLog) == 0
	})
}

// The same, when the new log has already grown past the old position by
// the time the applier resumes: only the log's fingerprint at the position
// (the timestamp of the last applied record) can tell.
func TestATargetResumingOnARecreatedTopicNoticesItFromTheRecordAtItsPosition(t *testing.T) {
	ta := newTestApplier(t, func(c *Config) { c.LagInterval = 100 * time.Millisecond })
	ta.publish(10, 0)
	_, stop := ta.startWorker()
	eventually(t, 10*time.Second, "10 applied", func() bool { return ta.nextOffset() == 10 })
	stop()

	ctx := context.Background()
	if _, err := ta.cluster.Client().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{ta.topic}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the topic created again", func() bool {
		if err := ta.cluster.EnsureTopics(ctx, 1, kafkaadmin.EventsTopicSpec(ta.topic, 1, time.Hour)); err != nil {
			return false
		}
		_, ends, err := ta.cluster.LogBounds(ctx, ta.topic)
		return err == nil && ends[0] == 0
	})
	time.Sleep(10 * time.Millisecond) // new records get later timestamps than the old ones
	ta.publish(20, 100)               // the new log is already past the old position (10)

	ta.startWorker()
	time.Sleep(1500 * time.Millisecond)
	if n := ta.rowCount(); n != 10 {
		t.Fatalf("%d rows: the worker applied the new log from offset 10, skipping its first 10 events silently", n)
	}
	if st := ta.report.status(); len(st.AheadOfLog) != 1 {
		t.Fatalf("status does not report the moved log: %+v", st)
	}
	rw := &control.Rewind{ID: "20991231T000000.000000000Z-" + testenv.ID(), Offsets: map[int]int64{0: 0}}
	ta.obey(control.DesiredState{Rewind: rw, By: "test"})
	eventually(t, 20*time.Second, "the whole new log applied after the rewind", func() bool { return ta.rowCount() == 30 })
}

// One event with a value its target's projection refuses goes to the DLQ,
// the error naming the projection; the rest of its batch applies, to the
// ledger and to the projection's table alike.
func TestAnEventAProjectionRefusesIsDeadLetteredNamingIt(t *testing.T) {
	ta := newTestApplier(t, func(c *Config) {
		c.Projections = []targetdb.Projection{{Name: "amounts", SQL: `INSERT INTO amounts SELECT id, (data->>'amount')::int FROM batch`}}
	})
	if _, err := ta.db.Exec(context.Background(), `CREATE TABLE amounts (id text PRIMARY KEY, amount int)`); err != nil {
		t.Fatal(err)
	}
	var recs []targetdb.Record
	for i, amount := range []string{"1", "2", `"three"`, "4", "5"} {
		recs = append(recs, targetdb.Decode(kafka.Message{Topic: ta.topic, Offset: int64(i),
			Value: fmt.Appendf(nil, `{"specversion":"1.0","id":"e%d","source":"s","type":"t","data":{"amount":%s}}`, i, amount)}))
	}
	var prog progress
	if err := ta.applySpan(context.Background(), recs, &prog); err != nil {
		t.Fatal(err)
	}
	letters := ta.deadLetters()
	if len(letters) != 1 || letters[0].ID != "e2" || !strings.Contains(letters[0].Error, "projection amounts") {
		t.Fatalf("dead letters %+v, want e2 naming projection amounts", letters)
	}
	var rows int
	if err := ta.db.QueryRow(context.Background(), `SELECT count(*) FROM amounts`).Scan(&rows); err != nil || rows != 4 {
		t.Fatalf("amounts holds %d rows (%v), want the 4 good events", rows, err)
	}
	if n := ta.rowCount(); n != 4 {
		t.Fatalf("the ledger holds %d events, want 4: the refused one is in the DLQ, not half-applied", n)
	}
}
