package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/control"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
	"github.com/sluicehq/sluice/internal/testenv"
)

// One table of partition worker scenarios, run against two backends, after
// Watermill's shared pub/sub test suite: the in-memory fakes of
// worker_fakes_test.go, inside a synctest bubble (every wait takes no real
// time, so the whole table runs in milliseconds, with -short too), and the
// local stack's Kafka and PostgreSQL (skipped with -short).

// workerBackend is what a scenario runs a worker on. Partition 0 only.
type workerBackend interface {
	// deps are the worker's dependencies; the backend's breaker reports
	// its changes to seen.
	deps(seen func(BreakerState)) *workerDeps
	// publish appends one event per kind: "ok", "poison" (the target
	// refuses it: its own fault) or "garbage" (it does not decode).
	publish(kinds ...string)
	// failRetryably makes every transaction holding the events at offsets
	// fail on a lock, until heal.
	failRetryably(offsets ...int64)
	heal()
	// slowInserts makes each event take perRecord to insert.
	slowInserts(perRecord time.Duration)
	// recreateLog deletes the events topic and creates it again, empty.
	recreateLog()
	// position is the target's offsets row (-1: none), rewindID the last
	// command it recorded, events the ledger's size, deadLetters the
	// offsets in the DLQ, and sessions how many database sessions the
	// applier holds now.
	position() int64
	rewindID() string
	events() int
	deadLetters() []int64
	sessions() int
	// obey makes s the desired state, as the control topic does.
	obey(s control.DesiredState)
}

type workerScenario struct {
	name string
	tune func(*Config)
	run  func(s *scenario)
}

var workerScenarios = []workerScenario{
	{name: "a worker applies the partition from its start and commits the group offset", run: func(s *scenario) {
		s.publish(kinds(30, "ok")...)
		s.start()
		s.eventually("30 events applied", func() bool { return s.position() == 30 && s.events() == 30 })
		s.eventually("the group offset committed", func() bool { return s.gen.committed() == 30 })
	}},
	{name: "a paused worker fetches nothing and holds no session until resumed", tune: func(c *Config) { c.BatchSize = 20 }, run: func(s *scenario) {
		s.slowInserts(2500 * time.Microsecond) // a batch takes a while: the pause lands mid-batch
		s.publish(kinds(400, "ok")...)
		s.start()
		s.eventually("applying started", func() bool { return s.position() > 0 })
		s.obey(control.DesiredState{Paused: true, By: "test"})
		s.eventually("no reader and no session while paused", func() bool { return s.log.open.Load() == 0 && s.sessions() == 0 })
		held, fetched := s.position(), s.log.fetches.Load()
		s.holds(time.Second, "nothing fetched or applied while paused", func() bool {
			return s.position() == held && s.log.fetches.Load() == fetched && s.sessions() == 0
		})
		if held >= 400 {
			s.Fatal("everything was applied before the pause; the scenario proves nothing")
		}
		s.obey(control.DesiredState{Paused: false, By: "test"})
		s.eventually("all 400 applied after resume", func() bool { return s.position() == 400 && s.events() == 400 })
	}},
	{name: "a rewind replays from its offset once, and a restart does not replay it again", run: func(s *scenario) {
		s.publish(kinds(50, "ok")...)
		s.start()
		s.eventually("50 applied", func() bool { return s.position() == 50 })
		rw := &control.Rewind{ID: "rw-" + testenv.ID(), Offsets: map[int]int64{0: 10}, RequestedAt: time.Now()}
		s.obey(control.DesiredState{Rewind: rw, By: "test"})
		s.eventually("the rewind recorded", func() bool { return s.rewindID() == rw.ID })
		s.eventually("caught up again, 40 of them duplicates", func() bool {
			return s.position() == 50 && testutil.ToFloat64(s.d.m.duplicate) == 40
		})
		if n := s.events(); n != 50 {
			s.Fatalf("%d events after the replay, want 50 (idempotent)", n)
		}
		s.restart()
		s.publish(kinds(5, "ok")...)
		s.eventually("new events applied", func() bool { return s.position() == 55 })
		s.obey(control.DesiredState{Rewind: rw, By: "test"}) // seen again, as after a broker restart
		s.holds(500*time.Millisecond, "the same rewind never moves the partition again", func() bool {
			return s.position() == 55 && testutil.ToFloat64(s.d.m.duplicate) == 40
		})
	}},
	{name: "a skip moves the partition forward and the events skipped are never applied", run: func(s *scenario) {
		s.publish(kinds(10, "ok")...)
		s.start()
		s.eventually("10 applied", func() bool { return s.position() == 10 })
		s.stop()
		s.publish(kinds(20, "ok")...)
		s.obey(control.DesiredState{Skip: &control.Rewind{ID: "sk-" + testenv.ID(), Offsets: map[int]int64{0: 25}}, By: "test"})
		s.start()
		s.eventually("the events after the skip applied", func() bool { return s.position() == 30 })
		s.holds(300*time.Millisecond, "only the 5 events after the skip applied", func() bool { return s.events() == 15 })
	}},
	{name: "a generation ending mid-batch stops the worker without tripping the breaker", tune: func(c *Config) { c.TripAfter = 1 }, run: func(s *scenario) {
		s.slowInserts(2 * time.Millisecond)
		s.publish(kinds(300, "ok")...)
		s.start()
		s.eventually("a batch under way", func() bool { return s.sessions() > 0 })
		if took := s.stop(); took > s.d.cfg.ApplyTimeout+time.Second {
			s.Errorf("the worker took %v to stop; a batch is bounded by ApplyTimeout (%v)", took, s.d.cfg.ApplyTimeout)
		}
		if next, n := s.position(), s.events(); next > 0 && int64(n) != next {
			s.Fatalf("offsets row at %d but %d events: offsets and ledger disagree", next, n)
		}
		if st := s.d.breaker.State(); st != BreakerClosed || len(s.breakerSeen()) != 0 {
			s.Fatalf("breaker %v (changes %v) after a generation ended on a healthy target", st, s.breakerSeen())
		}
		s.start()
		s.eventually("the next owner applies the rest", func() bool { return s.position() == 300 && s.events() == 300 })
	}},
	{name: "a target ahead of a recreated log stops until an operator rewinds it", run: func(s *scenario) {
		s.publish(kinds(10, "ok")...)
		s.start()
		s.eventually("10 applied", func() bool { return s.position() == 10 })
		s.stop()
		s.recreateLog()
		s.publish(kinds(20, "ok")...) // the new log is already past the old position
		s.start()
		s.eventually("the partition found ahead of its log", s.ahead)
		s.holds(time.Second, "nothing of the new log applied", func() bool { return s.events() == 10 && s.ahead() })
		s.obey(control.DesiredState{Rewind: &control.Rewind{ID: "20991231T000000.000000000Z-" + testenv.ID(), Offsets: map[int]int64{0: 0}}, By: "test"})
		s.eventually("the whole new log applied after the rewind", func() bool { return s.events() == 30 && s.position() == 20 })
		if s.ahead() {
			s.Fatal("still ahead of the log after the rewind")
		}
	}},
	{name: "a target whose position lies beyond its log's end stops until an operator rewinds it", tune: func(c *Config) {
		c.LagInterval = 100 * time.Millisecond
	}, run: func(s *scenario) {
		if err := s.d.positions.advance(context.Background(), targetdb.Cursor{Topic: s.d.topic, Next: 1000}); err != nil {
			s.Fatal(err)
		}
		s.publish(kinds(5, "ok")...)
		s.monitorLag(500 * time.Millisecond)
		s.start()
		s.eventually("the partition found ahead of its log", func() bool { return s.ahead() && testutil.ToFloat64(s.d.m.aheadOfLog) == 1 })
		s.publish(kinds(1000, "ok")...) // the new log grows past the old position: still nothing may be applied
		s.holds(time.Second, "nothing applied while ahead of the log", func() bool { return s.events() == 0 && s.ahead() })
		s.obey(control.DesiredState{Rewind: &control.Rewind{ID: "20991231T000000.000000000Z-" + testenv.ID(), Offsets: map[int]int64{0: 0}}, By: "test"})
		s.eventually("all 1005 events of the new log applied after the rewind", func() bool { return s.events() == 1005 && s.position() == 1005 })
		s.eventually("the ahead-of-log gauge back at 0", func() bool { return testutil.ToFloat64(s.d.m.aheadOfLog) == 0 })
	}},
	{name: "a failing target opens the breaker, which probes and closes once the target heals", run: func(s *scenario) {
		s.publish(kinds(20, "ok")...)
		s.failRetryably(0)
		s.start()
		s.eventually("the breaker open", func() bool { return s.d.breaker.State() == BreakerOpen })
		s.eventually("no reader and no session while open", func() bool { return s.log.open.Load() == 0 && s.sessions() == 0 })
		if s.position() > 0 {
			s.Fatalf("offsets row at %d while every batch failed", s.position())
		}
		s.heal()
		s.eventually("all applied once healed", func() bool { return s.position() == 20 && s.events() == 20 })
		s.eventually("the breaker closed", func() bool { return s.d.breaker.State() == BreakerClosed })
		seen := s.breakerSeen()
		if i := slices.Index(seen, BreakerHalfOpen); seen[0] != BreakerOpen || i < 0 || !slices.Contains(seen[i:], BreakerClosed) {
			s.Fatalf("breaker changes %v, want open, then half-open (the probe), then closed", seen)
		}
	}},
	{name: "a slow database gets smaller batches and still applies everything", tune: func(c *Config) {
		c.BatchSize, c.StatementTimeout, c.TripAfter = 400, time.Second, 100 // the batch size is the subject, not the breaker
	}, run: func(s *scenario) {
		s.slowInserts(5 * time.Millisecond) // 400 × 5 ms = 2 s: a whole batch never fits in 1 s
		s.publish(kinds(400, "ok")...)
		s.start()
		s.eventually("all 400 applied through smaller batches", func() bool { return s.position() == 400 && s.events() == 400 })
		if l := s.d.limit.get(); l >= 400 {
			s.Errorf("batch limit %d after timeouts, want it shrunk", l)
		}
	}},
	{name: "a poison record goes to the DLQ alone and the rest of its batch applies", run: func(s *scenario) {
		s.publish("ok", "ok", "poison", "ok", "garbage", "ok", "poison", "poison", "ok")
		s.start()
		s.eventually("the whole batch dealt with", func() bool { return s.position() == 9 })
		if n := s.events(); n != 5 {
			s.Errorf("%d events in the ledger, want the 5 good ones", n)
		}
		if got := s.deadLetters(); !slices.Equal(got, []int64{2, 4, 6, 7}) {
			s.Errorf("dead letters at %v, want [2 4 6 7], once each", got)
		}
		if st := s.d.breaker.State(); st != BreakerClosed {
			s.Errorf("breaker %v: poison records are not the database's fault", st)
		}
	}},
	{name: "a poison record is dead-lettered once when the rest of its batch fails retryably", run: func(s *scenario) {
		s.publish("ok", "ok", "garbage", "ok", "ok")
		s.failRetryably(3)
		s.start()
		s.eventually("the target's position past the poison record", func() bool { return s.position() == 3 })
		s.restart() // the batch is fetched again from the target's position
		s.heal()
		s.eventually("the rest applied", func() bool { return s.position() == 5 && s.events() == 4 })
		if got := s.deadLetters(); !slices.Equal(got, []int64{2}) {
			s.Errorf("dead letters at %v, want [2]", got)
		}
	}},
}

func kinds(n int, kind string) []string { return slices.Repeat([]string{kind}, n) }

func TestPartitionWorker(t *testing.T) {
	for _, sc := range workerScenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Run("fakes", func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) { sc.run(newScenario(t, newFakeBackend(t, sc.tune))) })
			})
			t.Run("stack", func(t *testing.T) {
				if testing.Short() {
					t.Skip("needs the local stack: not run with -short")
				}
				sc.run(newScenario(t, newStackBackend(t, sc.tune)))
			})
		})
	}
}

// scenario runs partition 0's worker on a backend, one generation at a
// time.
type scenario struct {
	*testing.T
	workerBackend
	d   *workerDeps
	log *countingLog
	gen *fakeGeneration

	mu   sync.Mutex
	seen []BreakerState

	done chan struct{}
}

func newScenario(t *testing.T, b workerBackend) *scenario {
	s := &scenario{T: t, workerBackend: b}
	s.d = b.deps(func(to BreakerState) { s.mu.Lock(); s.seen = append(s.seen, to); s.mu.Unlock() })
	s.log = &countingLog{eventLog: s.d.events}
	s.d.events = s.log
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *scenario) breakerSeen() []BreakerState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// start runs the worker for a new generation, from the target's position.
func (s *scenario) start() {
	s.Helper()
	if s.done != nil {
		s.Fatal("a worker is running already")
	}
	s.gen, s.done = newFakeGeneration(), make(chan struct{})
	go func(g *fakeGeneration, done chan struct{}) {
		defer close(done)
		runPartition(generationCtx{Context: context.Background(), g: g}, s.d, g, 0, kafka.FirstOffset)
	}(s.gen, s.done)
}

// stop ends the generation and waits for the worker, reporting how long
// that took.
func (s *scenario) stop() time.Duration {
	s.Helper()
	if s.done == nil {
		return 0
	}
	began := time.Now()
	s.gen.end()
	select {
	case <-s.done:
	case <-time.After(2 * s.d.cfg.ApplyTimeout):
		s.Fatal("the worker did not stop after its generation ended")
	}
	s.done = nil
	return time.Since(began)
}

// monitorLag measures the worker's lag every LagInterval until the
// scenario ends, as the Applier's lag monitor does: it is what finds a
// position beyond the log's end (ahead after grace).
func (s *scenario) monitorLag(grace time.Duration) {
	l := &lagMeter{events: s.d.events, now: s.d.now, aheadGrace: grace, m: s.d.m, status: s.d.status, log: s.d.log}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(s.d.cfg.LagInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_, _ = l.measure(ctx, s.d.partitions.snapshot())
		}
	}()
	s.Cleanup(func() { cancel(); <-done })
}

// restart hands the partition to a new worker, as a rebalance does.
func (s *scenario) restart() { s.stop(); s.start() }

// ahead reports whether the worker holds the partition as ahead of its log.
func (s *scenario) ahead() bool {
	st := s.d.partitions.snapshot()[0]
	return st != nil && st.ahead.Load()
}

func (s *scenario) eventually(what string, cond func() bool) {
	s.Helper()
	eventually(s.T, 20*time.Second, what, cond)
}

// holds checks that cond holds throughout d.
func (s *scenario) holds(d time.Duration, what string, cond func() bool) {
	s.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !cond() {
			s.Fatalf("within %v: %s no longer holds", d, what)
		}
	}
}

// countingLog counts the fetchers open and the fetches made on a log.
type countingLog struct {
	eventLog
	open, fetches atomic.Int64
}

func (l *countingLog) newFetcher(partition int, log *slog.Logger) fetcher {
	l.open.Add(1)
	return &countedFetcher{fetcher: l.eventLog.newFetcher(partition, log), log: l}
}

type countedFetcher struct {
	fetcher
	log  *countingLog
	once sync.Once
}

func (f *countedFetcher) FetchMessage(ctx context.Context) (kafka.Message, error) {
	f.log.fetches.Add(1)
	return f.fetcher.FetchMessage(ctx)
}

func (f *countedFetcher) Close() error {
	f.once.Do(func() { f.log.open.Add(-1) })
	return f.fetcher.Close()
}

// eventValue is the record value of one event of the given kind.
func eventValue(kind, id string) []byte {
	switch kind {
	case "poison":
		return testenv.Poison("src", id)
	case "garbage":
		return []byte(`{"not":"an event"`)
	}
	return testenv.Event("src", id)
}

// scenarioBreaker is a target's breaker that also tells seen its changes.
func scenarioBreaker(c Config, also func(from, to BreakerState), seen func(BreakerState)) *breaker {
	return newBreaker(breakerConfig{
		name: c.Target, tripAfter: c.TripAfter, minOpen: c.BreakerMinOpen, maxOpen: c.BreakerMaxOpen, now: c.now,
		onChange: func(from, to BreakerState) { also(from, to); seen(to) },
	})
}

// fakeBackend is the in-memory backend.
type fakeBackend struct {
	cfg   Config
	log   *memLog
	store *memStore
	dlq   *memDLQ
	ctrl  *controlView
	seq   int
}

func newFakeBackend(t *testing.T, tune func(*Config)) *fakeBackend {
	cfg := Config{
		Target: "fake", Topic: "sluice.test.fake",
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		BreakerMinOpen: 200 * time.Millisecond, BreakerMaxOpen: 400 * time.Millisecond,
		LockTimeout: 300 * time.Millisecond, ApplyTimeout: 3 * time.Second,
	}
	if tune != nil {
		tune(&cfg)
	}
	cfg.setDefaults()
	return &fakeBackend{cfg: cfg, log: newMemLog(cfg.Topic), store: newMemStore(cfg.StatementTimeout), dlq: &memDLQ{}, ctrl: newControlView()}
}

func (b *fakeBackend) deps(seen func(BreakerState)) *workerDeps {
	c := b.cfg
	m := newMetrics(nil, c.Target)
	return &workerDeps{
		topic: c.Topic, target: c.Target, dlqTopic: c.DLQTopic,
		cfg: workerConfig{BatchSize: c.BatchSize, Linger: c.Linger, StallTimeout: c.StallTimeout,
			ApplyTimeout: c.ApplyTimeout, LagInterval: c.LagInterval, retry: retryPolicy{c.RetryMin, c.RetryMax}},
		events: b.log, positions: b.store, dlq: b.dlq,
		breaker: scenarioBreaker(c, func(_, to BreakerState) {
			m.breakerState.Set(float64(to))
			if to == BreakerOpen {
				m.breakerOpenings.Inc()
			}
		}, seen),
		now: c.now, desired: b.ctrl,
		limit:      newBatchLimit(c.BatchSize, c.StatementTimeout/4, func(n int) { m.batchLimit.Set(float64(n)) }),
		partitions: &partitionSet{}, m: m, status: nopStatus{}, stalls: (*blockerWatch)(nil), log: c.Logger,
	}
}

func (b *fakeBackend) publish(kinds ...string) {
	for _, k := range kinds {
		b.seq++
		offset := b.log.append(0, eventValue(k, fmt.Sprint("e", b.seq)))
		if k == "poison" {
			b.store.failAt(errCheckViolation, offset)
		}
	}
}

func (b *fakeBackend) failRetryably(offsets ...int64) { b.store.failAt(errLockTimeout, offsets...) }
func (b *fakeBackend) heal()                          { b.store.heal() }
func (b *fakeBackend) recreateLog()                   { b.log.recreate() }
func (b *fakeBackend) slowInserts(d time.Duration) {
	b.store.mu.Lock()
	defer b.store.mu.Unlock()
	b.store.perRecord = d
}

func (b *fakeBackend) position() int64 {
	o, _ := b.store.load(context.Background(), 0)
	if !o.Found {
		return -1
	}
	return o.Next
}

func (b *fakeBackend) rewindID() string {
	o, _ := b.store.load(context.Background(), 0)
	return o.RewindID
}

func (b *fakeBackend) events() int   { return b.store.events() }
func (b *fakeBackend) sessions() int { return b.store.inTransaction() }
func (b *fakeBackend) deadLetters() []int64 {
	b.dlq.mu.Lock()
	defer b.dlq.mu.Unlock()
	return slices.Clone(b.dlq.offsets)
}
func (b *fakeBackend) obey(s control.DesiredState) { b.ctrl.set(s) }

// stackBackend is the local stack: a fresh topic and database per scenario.
type stackBackend struct {
	*testApplier
	seq int
}

func newStackBackend(t *testing.T, tune func(*Config)) *stackBackend {
	ta := newTestApplier(t, tune)
	testenv.RefusePoison(t, ta.dsn)
	// Events whose ids are in sluice_test_locked fail as on a lock.
	if _, err := ta.db.Exec(context.Background(), `
		CREATE TABLE sluice_test_locked (id text PRIMARY KEY);
		CREATE FUNCTION sluice_test_locked() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF EXISTS (SELECT FROM sluice_test_locked WHERE id = NEW.id) THEN
				RAISE EXCEPTION 'row % is locked', NEW.id USING ERRCODE = '55P03';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER sluice_test_locked BEFORE INSERT ON sluice_events FOR EACH ROW EXECUTE FUNCTION sluice_test_locked()`); err != nil {
		t.Fatal(err)
	}
	return &stackBackend{testApplier: ta}
}

func (b *stackBackend) deps(seen func(BreakerState)) *workerDeps {
	b.breaker = scenarioBreaker(b.cfg, b.breakerChanged, seen)
	return b.workerDeps()
}

// ids are the event ids of the current log, by offset.
func (b *stackBackend) idsAt(offsets ...int64) []string {
	// Event ids are e<seq>, seq counting every event published; a log's
	// offsets restart at 0 when it is recreated, so ask the log.
	var ids []string
	err := b.cluster.ReadToEnd(context.Background(), b.topic, 0, func(m kafka.Message) {
		if slices.Contains(offsets, m.Offset) {
			ids = append(ids, targetdb.Decode(m).Event.ID)
		}
	})
	if err != nil {
		b.t.Fatal(err)
	}
	return ids
}

func (b *stackBackend) publish(kinds ...string) {
	b.t.Helper()
	w := b.cluster.NewWriter(kafkaadmin.WriterConfig{Topic: b.topic})
	defer w.Close()
	msgs := make([]kafka.Message, len(kinds))
	for i, k := range kinds {
		b.seq++
		msgs[i] = kafka.Message{Key: []byte("k"), Value: eventValue(k, fmt.Sprint("e", b.seq))}
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		b.t.Fatal(err)
	}
}

func (b *stackBackend) failRetryably(offsets ...int64) {
	b.t.Helper()
	for _, id := range b.idsAt(offsets...) {
		if _, err := b.db.Exec(context.Background(), `INSERT INTO sluice_test_locked VALUES ($1)`, id); err != nil {
			b.t.Fatal(err)
		}
	}
}

func (b *stackBackend) heal() {
	if _, err := b.db.Exec(context.Background(), `DELETE FROM sluice_test_locked`); err != nil {
		b.t.Fatal(err)
	}
}

func (b *stackBackend) slowInserts(d time.Duration) { b.testApplier.slowInserts("ROW", d.Seconds()) }

func (b *stackBackend) recreateLog() {
	b.t.Helper()
	ctx := context.Background()
	if _, err := b.cluster.Client().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{b.topic}}); err != nil {
		b.t.Fatal(err)
	}
	eventually(b.t, 30*time.Second, "the topic created again", func() bool {
		if err := b.cluster.EnsureTopics(ctx, 1, kafkaadmin.EventsTopicSpec(b.topic, 1, time.Hour)); err != nil {
			return false
		}
		_, ends, err := b.cluster.LogBounds(ctx, b.topic)
		return err == nil && ends[0] == 0
	})
	time.Sleep(10 * time.Millisecond) // new records get later timestamps than the old ones
}

func (b *stackBackend) position() int64 { return b.nextOffset() }

func (b *stackBackend) rewindID() string {
	o, err := b.workerDeps().positions.load(context.Background(), 0)
	if err != nil {
		b.t.Fatal(err)
	}
	return o.RewindID
}

func (b *stackBackend) events() int   { return b.rowCount() }
func (b *stackBackend) sessions() int { return int(b.pool.Stat().AcquiredConns()) }

func (b *stackBackend) deadLetters() []int64 {
	var out []int64
	for _, l := range b.testApplier.deadLetters() {
		out = append(out, l.OriginalOffset)
	}
	return out
}

// committed is the last group offset the worker committed.
func (g *fakeGeneration) committed() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.last
}
