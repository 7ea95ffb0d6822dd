package e2e

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Faults of a service that neither fails nor stops cleanly.
//
// A frozen service (SIGSTOP: a VM paused, a process stuck in the kernel, a
// network that drops without resetting) keeps its sockets open and answers
// nothing. No error arrives to act on; only deadlines find it. These tests
// freeze one service under load and check that every wait of sluice's is
// bounded and that nothing is lost once the service wakes.

// TestAFrozenTargetClusterIsLagOnlyThere freezes PostgreSQL B for 25s under
// load. Nothing on B can time out while it is frozen, so sluice's own
// deadlines must: the batches in flight fail at the apply timeout (15s) and
// open B's breaker, ctl status answers in time and says B's database does
// not answer, ingest answers 202 throughout, A keeps up, B's applier stays
// up, and once B wakes it catches up with exactly the accepted events.
func TestAFrozenTargetClusterIsLagOnlyThere(t *testing.T) {
	f := startFaultRun(t, 400, 50*time.Second)
	f.at(5 * time.Second)
	freeze(t, f.p.svc.stack, "pg", "b")
	frozenAt := time.Now()

	// The apply timeout, then a status report (every 2s), and a margin.
	time.Sleep(19 * time.Second)
	began := time.Now()
	view := f.p.statusOf(t, "b")
	statusTook := time.Since(began)
	if statusTook > 20*time.Second {
		t.Errorf("ctl status took %v with B frozen; its inspection of a target is bounded by 15s", statusTook)
	}
	if view["breaker"] != "open" && view["breaker"] != "half-open" {
		t.Errorf("ctl status says B's breaker is %v 19s into the freeze; the apply timeout is 15s", view["breaker"])
	}
	if view["database_error"] == nil {
		t.Error("ctl status reports no error from B's database, which is frozen")
	}
	t.Logf("ctl status answered in %v with B frozen: breaker %v, database error %q", statusTook.Round(time.Millisecond), view["breaker"], view["database_error"])

	time.Sleep(time.Until(frozenAt.Add(25 * time.Second)))
	f.obs.excuseIdle(3 * time.Second) // the timeouts that fell due while B was frozen run now
	thaw(t, f.p.svc.stack, "pg", "b")
	frozeFor := time.Since(frozenAt)
	if !f.b.running() {
		t.Fatal("B's applier exited while its cluster was frozen")
	}
	catchUp := waitMetricBelow(t, f.b, fmt.Sprintf(`sluice_consumer_lag_seconds{target=%q}`, f.p.targets["b"]), 1, 2*time.Minute)
	res, obs := f.finish(t)
	if !obs.BreakerOpenedB {
		t.Error("B's breaker never opened while B was frozen")
	}
	record(t, "fault-frozen-target", map[string]any{
		"frozen_seconds": frozeFor.Seconds(), "catch_up_seconds": catchUp.Seconds(),
		"ctl_status_seconds": statusTook.Seconds(), "events_accepted": res.Accepted,
		"non_2xx": res.Non2xx, "timeouts": res.Timeouts, "observed": obs,
	})
}

// TestAFrozenBrokerAnswersInTimeAndLosesNothing freezes the Kafka broker for
// 15s under load. Ingest cannot append, so it must say so, 503 within its
// write timeout (10s), rather than hold requests past the client's patience;
// publishers retry, and every event answered 202 reaches both targets once.
func TestAFrozenBrokerAnswersInTimeAndLosesNothing(t *testing.T) {
	p := newPipeline(t, pipelineOptions{})
	p.startIngest()
	a, b := p.startApply("a"), p.startApply("b")
	source := "frozen-broker/" + p.id
	load := make(chan loadgenResult, 1)
	const rate, seconds = 300, 35
	go func() {
		load <- p.loadgen("--source", source, "--events", strconv.Itoa(rate*seconds), "--duplicates", "0.05",
			"--rate", strconv.Itoa(rate), "--batch", "20", "--concurrency", "8", "--timeout", "15s", "--retries", "60")
	}()
	p.waitCount("a", source, rate*3, time.Minute)
	freeze(t, p.svc.stack, "kafka")
	frozenAt := time.Now()
	// An operator's first look: ctl status must answer, not hang on the broker.
	began := time.Now()
	out, err := p.command("ctl", "status", p.targets["b"]).CombinedOutput()
	t.Logf("ctl status with the broker frozen took %v (%v):\n%s", time.Since(began).Round(time.Millisecond), err, out)
	if took := time.Since(began); took > 30*time.Second {
		t.Errorf("ctl status took %v with the broker frozen", took)
	}
	time.Sleep(time.Until(frozenAt.Add(15 * time.Second)))
	thaw(t, p.svc.stack, "kafka")

	res := <-load
	t.Logf("loadgen: %d sent, %d accepted (%d unique), %d non-2xx answers, %d timeouts, %d failed",
		res.Sent, res.Accepted, res.UniqueAccepted, res.Non2xx, res.Timeouts, res.Failed)
	if res.Timeouts != 0 {
		t.Errorf("%d requests waited past 15s for an answer; ingest must answer within its write timeout", res.Timeouts)
	}
	if res.Failed != 0 {
		t.Errorf("%d events were never accepted, though the broker came back", res.Failed)
	}
	if res.Non2xx == 0 {
		t.Error("no request was refused while the broker was frozen for 15s: was it frozen?")
	}
	for short, ap := range map[string]*applier{"a": a, "b": b} {
		p.waitCount(short, source, res.UniqueAccepted, 3*time.Minute)
		got, rows := p.ids(short, source)
		if err := sameSet(res.ids, got); err != nil || rows != res.UniqueAccepted {
			t.Errorf("target %s holds %d rows (%v); want the %d accepted events once each", short, rows, err, res.UniqueAccepted)
		}
		if !ap.running() {
			t.Errorf("the applier of %s exited while the broker was frozen", short)
		}
		if lag := p.waitLagZero(short, time.Minute); lag != 0 {
			t.Errorf("target %s still lags %d messages", short, lag)
		}
	}
}

// TestACrashedBackendOfBIsRecoveredFrom kills one of the applier's
// PostgreSQL backends on B with SIGKILL, three times under load. A backend
// that dies so makes the postmaster end every session and replay its WAL
// (crash recovery): B is gone for a moment, and every transaction in flight
// is lost. Nothing committed may be lost or applied twice, ingest and A must
// not notice, and B must catch up on its own.
func TestACrashedBackendOfBIsRecoveredFrom(t *testing.T) {
	f := startFaultRun(t, 400, 30*time.Second)
	appB, dbB := "sluice-apply-"+f.p.targets["b"], "sluice_test_"+f.p.id
	for i, at := range []time.Duration{5 * time.Second, 12 * time.Second, 19 * time.Second} {
		f.at(at)
		pid := sluiceBackend(t, f.p.svc.pgB, appB, dbB)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 backend %d: %v", pid, err)
		}
		t.Logf("crash %d: killed B's backend %d", i+1, pid)
	}
	catchUp := waitMetricBelow(t, f.b, fmt.Sprintf(`sluice_consumer_lag_seconds{target=%q}`, f.p.targets["b"]), 1, 2*time.Minute)
	res, obs := f.finish(t)
	if !f.b.running() {
		t.Error("B's applier exited over a crash of its database")
	}
	record(t, "fault-crashed-backend", map[string]any{
		"crashes": 3, "catch_up_seconds": catchUp.Seconds(), "events_accepted": res.Accepted,
		"non_2xx": res.Non2xx, "timeouts": res.Timeouts, "observed": obs,
	})
}

// sluiceBackend waits up to 10s for a backend of the applier on dsn's
// cluster and returns its pid.
func sluiceBackend(t *testing.T, dsn, app, db string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			var pid int
			err = conn.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
				WHERE application_name = $1 AND datname = $2 ORDER BY backend_start LIMIT 1`, app, db).Scan(&pid)
			conn.Close(context.Background())
			if err == nil {
				cancel()
				return pid
			}
		}
		cancel()
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no session of %s on %s in 10s", app, db)
	return 0
}

// freeze stops every process of a service of the local stack with SIGSTOP
// ("pg", "b" or "kafka"), and thaws it when the test ends if it is still
// frozen then.
func freeze(t *testing.T, stack, service string, cluster ...string) {
	t.Helper()
	if out, err := runStack(stack, append([]string{"freeze-" + service}, cluster...)...); err != nil {
		t.Fatalf("freeze-%s: %v\n%s", service, err, out)
	}
	t.Cleanup(func() { _, _ = runStack(stack, append([]string{"thaw-" + service}, cluster...)...) })
}

func thaw(t *testing.T, stack, service string, cluster ...string) {
	t.Helper()
	if out, err := runStack(stack, append([]string{"thaw-" + service}, cluster...)...); err != nil {
		t.Fatalf("thaw-%s: %v\n%s", service, err, out)
	}
}
