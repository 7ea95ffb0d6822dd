package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// faultRun is a pipeline under steady load while a fault is done to B.
type faultRun struct {
	p      *pipeline
	a, b   *applier
	obs    *observer
	source string
	rate   int
	began  time.Time
	load   chan loadgenResult
}

// startFaultRun brings up ingest and both appliers and starts loadgen at
// rate events/s for the given duration, in batches of 20.
func startFaultRun(t *testing.T, rate int, duration time.Duration) *faultRun {
	t.Helper()
	p := newPipeline(t, pipelineOptions{})
	p.startIngest()
	f := &faultRun{p: p, a: p.startApply("a"), b: p.startApply("b"), source: "replay/" + p.id, rate: rate,
		load: make(chan loadgenResult, 1)}
	f.obs = p.observe(f.a, f.b)
	events := int(float64(rate) * duration.Seconds())
	f.began = time.Now()
	go func() {
		f.load <- p.loadgen("--source", f.source, "--events", strconv.Itoa(events), "--duplicates", "0.05",
			"--rate", strconv.Itoa(rate), "--batch", "20", "--concurrency", "8", "--timeout", "5s")
	}()
	return f
}

// at sleeps until d after the load began.
func (f *faultRun) at(d time.Duration) {
	time.Sleep(time.Until(f.began.Add(d)))
}

// finish waits for the load to end and for both targets to hold exactly the
// accepted unique events, then checks what sluice promises under any fault of
// one target: ingest answered 202 throughout, A kept up, B held at most its
// pool's sessions and none idle in a transaction past its timeout.
func (f *faultRun) finish(t *testing.T) (loadgenResult, observation) {
	t.Helper()
	res := <-f.load
	for _, target := range []string{"a", "b"} {
		f.p.waitCount(target, f.source, res.UniqueAccepted, 3*time.Minute)
		got, rows := f.p.ids(target, f.source)
		if rows != res.UniqueAccepted {
			t.Errorf("target %s holds %d rows, want %d", target, rows, res.UniqueAccepted)
		}
		if err := sameSet(res.ids, got); err != nil {
			t.Errorf("target %s: %v", target, err)
		}
	}
	obs := f.obs.snapshot()
	f.obs.stop()
	if res.Non2xx != 0 || res.Timeouts != 0 || res.Failed != 0 || res.Rejected != 0 {
		t.Errorf("ingest was hurt by a fault of one target: %d non-2xx answers, %d timeouts, %d failed, %d rejected",
			res.Non2xx, res.Timeouts, res.Failed, res.Rejected)
	}
	if obs.MaxLagA >= 2 {
		t.Errorf("A's lag reached %.2fs while B was faulty; it must stay under 2s", obs.MaxLagA)
	}
	if obs.MaxSessionsB > 2 {
		t.Errorf("sluice held %d sessions on B; its pool allows 2: %s", obs.MaxSessionsB, strings.Join(obs.ExcessSessionsB, "; "))
	}
	if obs.IdlePastTimeoutB != 0 {
		t.Errorf("saw a sluice session idle in transaction past its timeout %d times", obs.IdlePastTimeoutB)
	}
	return res, obs
}

// holdLock runs stmts in one transaction on dsn, holds it for d, then rolls
// back. It returns at once with the session's pid; done is closed after the
// rollback.
func holdLock(t *testing.T, dsn string, d time.Duration, stmts ...string) (pid int, done chan struct{}) {
	t.Helper()
	conn := connect(t, dsn)
	ctx := context.Background()
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	done = make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(d)
		_ = tx.Rollback(ctx)
	}()
	return pid, done
}

// statusOf runs `sluice ctl status TARGET --json`.
func (p *pipeline) statusOf(t testing.TB, short string) map[string]any {
	t.Helper()
	out, err := p.command("ctl", "status", p.targets[short], "--json").Output()
	if err != nil {
		t.Fatalf("ctl status: %v\n%s", err, out)
	}
	var views []map[string]any
	if err := json.Unmarshal(out, &views); err != nil || len(views) != 1 {
		t.Fatalf("ctl status output: %v\n%s", err, out)
	}
	return views[0]
}

// blockingPIDs lists the pids ctl status names as blocking a target.
func blockingPIDs(view map[string]any) []int {
	var pids []int
	list, _ := view["blocking_sessions"].([]any)
	for _, b := range list {
		if m, ok := b.(map[string]any); ok {
			pids = append(pids, int(m["pid"].(float64)))
		}
	}
	return pids
}

// record keeps a test's figures for docs/incident-replay.md, in
// $SLUICE_ARTIFACTS (default .artifacts at the repository's root).
func record(t *testing.T, name string, figures any) {
	t.Helper()
	dir := os.Getenv("SLUICE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", ".artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("artifacts: %v", err)
		return
	}
	b, _ := json.MarshalIndent(figures, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644); err != nil {
		t.Logf("artifacts: %v", err)
	}
	t.Logf("%s: %s", name, b)
}

// TestIncidentReplayLockedTableBecomesLag replays the incident's core: a
// migration on cluster B takes ACCESS EXCLUSIVE on sluice_events and holds it
// for 30s. Ingest must answer 202 throughout, A must keep up, B's breaker
// must open, ctl status must name the blocking session, and once the lock
// goes B must catch up on its own with exactly the accepted events.
func TestIncidentReplayLockedTableBecomesLag(t *testing.T) {
	f := startFaultRun(t, 400, 50*time.Second)
	f.at(5 * time.Second)
	lockedAt := time.Now()
	pid, released := holdLock(t, f.p.dsns["b"], 30*time.Second,
		`SET application_name = 'migration'`, `LOCK TABLE sluice_events IN ACCESS EXCLUSIVE MODE`)

	time.Sleep(10 * time.Second)
	view := f.p.statusOf(t, "b")
	if pids := blockingPIDs(view); len(pids) == 0 || pids[0] != pid {
		t.Errorf("ctl status names blocking sessions %v; the lock holder is pid %d", pids, pid)
	}
	if view["breaker"] != "open" && view["breaker"] != "half-open" {
		t.Errorf("ctl status says B's breaker is %v ten seconds into the lock", view["breaker"])
	}
	<-released
	releasedAt := time.Now()
	catchUp := waitMetricBelow(t, f.b, fmt.Sprintf(`sluice_consumer_lag_seconds{target=%q}`, f.p.targets["b"]), 1, 2*time.Minute)
	res, obs := f.finish(t)
	if !obs.BreakerOpenedB {
		t.Error("B's breaker never opened during a 30s lock")
	}
	record(t, "incident-replay-locked-table", map[string]any{
		"lock_held_seconds": releasedAt.Sub(lockedAt).Seconds(), "catch_up_seconds": catchUp.Seconds(),
		"events_accepted": res.Accepted, "unique_events": res.UniqueAccepted,
		"non_2xx": res.Non2xx, "timeouts": res.Timeouts, "observed": obs,
		"ctl_status_named_pid": blockingPIDs(view), "lock_holder_pid": pid,
	})
}

// TestRowLocksHeldByAnOpenTransaction is the seed's "open transaction holding
// row locks": a transaction on B inserts the very (source, id) rows that
// upcoming events will hit, and sits idle for 30s before rolling back.
func TestRowLocksHeldByAnOpenTransaction(t *testing.T) {
	f := startFaultRun(t, 400, 50*time.Second)
	// Events 4000…4099 are published around second 10; lock their rows now.
	var stmts []string
	stmts = append(stmts, `SET application_name = 'stale-writer'`)
	for id := 4000; id < 4100; id++ {
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO sluice_events (source, id, type, kafka_partition, kafka_offset)
			VALUES ('%s', '%d', 'stale', -1, -1)`, f.source, id))
	}
	f.at(3 * time.Second)
	pid, released := holdLock(t, f.p.dsns["b"], 30*time.Second, stmts...)
	f.at(20 * time.Second)
	view := f.p.statusOf(t, "b")
	named := false
	for _, got := range blockingPIDs(view) {
		named = named || got == pid
	}
	if !named {
		t.Errorf("ctl status names %v; the row-lock holder is pid %d", blockingPIDs(view), pid)
	}
	<-released
	catchUp := waitMetricBelow(t, f.b, fmt.Sprintf(`sluice_consumer_lag_seconds{target=%q}`, f.p.targets["b"]), 1, 2*time.Minute)
	res, obs := f.finish(t)
	if !obs.BreakerOpenedB {
		t.Error("B's breaker never opened while rows it needed were locked")
	}
	record(t, "incident-replay-row-locks", map[string]any{
		"catch_up_seconds": catchUp.Seconds(), "events_accepted": res.Accepted, "non_2xx": res.Non2xx,
		"timeouts": res.Timeouts, "observed": obs,
	})
}

// TestClusterStoppedFor30Seconds stops PostgreSQL B for 30s under load.
func TestClusterStoppedFor30Seconds(t *testing.T) {
	f := startFaultRun(t, 400, 50*time.Second)
	f.at(5 * time.Second)
	if out, err := runStack(f.p.svc.stack, "stop-pg", "b"); err != nil {
		t.Fatalf("stop B: %v\n%s", err, out)
	}
	stoppedAt := time.Now()
	t.Cleanup(func() { _, _ = runStack(f.p.svc.stack, "start-pg", "b") })
	time.Sleep(30 * time.Second)
	if out, err := runStack(f.p.svc.stack, "start-pg", "b"); err != nil {
		t.Fatalf("start B: %v\n%s", err, out)
	}
	down := time.Since(stoppedAt)
	catchUp := waitMetricBelow(t, f.b, fmt.Sprintf(`sluice_consumer_lag_seconds{target=%q}`, f.p.targets["b"]), 1, 2*time.Minute)
	res, obs := f.finish(t)
	if !obs.BreakerOpenedB {
		t.Error("B's breaker never opened while B was down")
	}
	record(t, "incident-replay-cluster-down", map[string]any{
		"down_seconds": down.Seconds(), "catch_up_seconds": catchUp.Seconds(), "events_accepted": res.Accepted,
		"non_2xx": res.Non2xx, "timeouts": res.Timeouts, "observed": obs,
	})
}

// TestFlappingLockDoesNotStormRetries locks and releases B every few
// seconds for a minute. Retries must not multiply: never more sessions than
// the pool, and far fewer failed attempts than a plain retry loop would make
// (six partitions retrying every 100ms would fail about 60 times a second).
func TestFlappingLockDoesNotStormRetries(t *testing.T) {
	f := startFaultRun(t, 300, 75*time.Second)
	f.at(5 * time.Second)
	flapStart := time.Now()
	for time.Since(flapStart) < time.Minute {
		_, released := holdLock(t, f.p.dsns["b"], 3*time.Second, `LOCK TABLE sluice_events IN ACCESS EXCLUSIVE MODE`)
		<-released
		time.Sleep(time.Second)
	}
	flapped := time.Since(flapStart)
	res, obs := f.finish(t)
	perSecond := obs.RetryableFailuresB / flapped.Seconds()
	if perSecond > 3 {
		t.Errorf("%.0f failed attempts in %v (%.1f/s): the breaker and backoff should keep it under 3/s",
			obs.RetryableFailuresB, flapped.Round(time.Second), perSecond)
	}
	record(t, "incident-replay-flapping", map[string]any{
		"flapping_seconds": flapped.Seconds(), "failed_attempts": obs.RetryableFailuresB,
		"failed_attempts_per_second": perSecond, "events_accepted": res.Accepted, "non_2xx": res.Non2xx,
		"observed": obs,
	})
}

// TestPoisonEventsGoToTheDLQ adds a CHECK constraint that only B has: the
// events breaking it must land in B's DLQ (and nowhere else), every other
// event must be applied, A must hold everything, and B's breaker must stay
// closed.
func TestPoisonEventsGoToTheDLQ(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{})
	mustExec(t, p.db("b"), `ALTER TABLE sluice_events ADD CONSTRAINT amount_is_not_13
		CHECK (coalesce((data->>'amount')::int, 0) <> 13)`)
	p.startIngest()
	a := p.startApply("a")
	b := p.startApply("b")
	obs := p.observe(a, b)
	source := "poison/" + p.id
	res := p.loadgen("--source", source, "--events", "5000", "--duplicates", "0")
	// loadgen's amount is id % 1000: ids 13, 1013, 2013, 3013 and 4013 are poison for B.
	poison := map[string]bool{"13": true, "1013": true, "2013": true, "3013": true, "4013": true}

	p.waitCount("a", source, 5000, 2*time.Minute)
	p.waitCount("b", source, 5000-len(poison), 2*time.Minute)
	gotB, rowsB := p.ids("b", source)
	if rowsB != 5000-len(poison) {
		t.Errorf("B holds %d rows, want %d", rowsB, 5000-len(poison))
	}
	for id := range res.ids {
		if gotB[id] == poison[id] {
			t.Errorf("event %s: in B = %v, poison = %v", id, gotB[id], poison[id])
		}
	}
	if _, rowsA := p.ids("a", source); rowsA != 5000 {
		t.Errorf("A holds %d rows, want all 5000: the constraint is B's alone", rowsA)
	}

	dead := readDLQ(t, p, "b", len(poison))
	for _, m := range dead {
		var ev struct{ ID string }
		_ = json.Unmarshal(m.Value, &ev)
		if !poison[ev.ID] {
			t.Errorf("event %s went to the DLQ but breaks nothing", ev.ID)
		}
		h := headers(m)
		if !strings.Contains(h["sluice-error"], "23514") || h["sluice-target"] != p.targets["b"] ||
			h["sluice-error-class"] != "permanent" {
			t.Errorf("DLQ headers of %s: %v", ev.ID, h)
		}
		if !sameRecord(t, p, h, m.Value) {
			t.Errorf("DLQ record of %s does not point at its original partition and offset: %v", ev.ID, h)
		}
	}
	if len(dead) != len(poison) {
		t.Errorf("B's DLQ holds %d records, want %d", len(dead), len(poison))
	}
	if extra := readDLQ(t, p, "a", 0); len(extra) != 0 {
		t.Errorf("A's DLQ holds %d records; A can apply everything", len(extra))
	}
	o := obs.snapshot()
	if o.BreakerOpenedB {
		t.Error("poison events opened B's breaker; they are the event's fault, not the database's")
	}
	if got := metric(t, b.addr, fmt.Sprintf(`sluice_apply_events_total{result="dead_lettered",target=%q}`, p.targets["b"])); got != float64(len(poison)) {
		t.Errorf("dead_lettered counted %v, want %d", got, len(poison))
	}
}

// readDLQ reads a target's DLQ until it has want records (or, for want 0,
// for a few seconds).
func readDLQ(t *testing.T, p *pipeline, short string, want int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: p.brokers, Topic: "sluice.dlq." + p.targets[short],
		Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	wait := 30 * time.Second
	if want == 0 {
		wait = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var out []kafka.Message
	for want == 0 || len(out) < want {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			break
		}
		out = append(out, m)
	}
	return out
}

func headers(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// sameRecord checks that the DLQ headers point at the original record.
func sameRecord(t *testing.T, p *pipeline, h map[string]string, value []byte) bool {
	t.Helper()
	part, err1 := strconv.Atoi(h["sluice-original-partition"])
	off, err2 := strconv.ParseInt(h["sluice-original-offset"], 10, 64)
	if err1 != nil || err2 != nil || h["sluice-original-topic"] != p.topic {
		return false
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: p.brokers, Topic: p.topic, Partition: part})
	defer r.Close()
	if err := r.SetOffset(off); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := r.ReadMessage(ctx)
	return err == nil && m.Offset == off && string(m.Value) == string(value)
}
