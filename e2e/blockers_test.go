package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testenv"
)

// TestNoHumanNeededAt1424 replays the report's stale lock on the whole
// system: while clients publish, an application's transaction on B takes
// row locks on the rows every batch updates and then sits idle. B's policy
// (terminate, after 5s) ends it; A's (report) names the same kind of session
// on A and ends nothing. Ingest answers 202 throughout, B catches up without
// anyone, and the log, the metric and ctl status say what happened. Then a
// busy session holding the same locks on B is spared.
func TestNoHumanNeededAt1424(t *testing.T) {
	const bound = 5 * time.Second
	p := newPipeline(t, pipelineOptions{partitions: 2, extraTarget: map[string]string{
		"a": "    blocker_policy: {after: 5s, mode: report}",
		"b": "    blocker_policy: {after: 5s, mode: terminate, users: [sluice_app]}",
	}})
	p.startIngest()
	a, b := p.startApply("a"), p.startApply("b")
	warm := p.loadgen("--events", "400", "--duplicates", "0", "--batch", "50")
	p.waitCount("a", warm.Source, 400, 30*time.Second)
	p.waitCount("b", warm.Source, 400, 30*time.Second) // every partition has its offsets row

	ctx := context.Background()
	hold := func(short string) (int, func() error) {
		conn := connect(t, testenv.AsApplication(t, p.dsns[short]))
		if _, err := conn.Exec(ctx, `SET application_name = 'metadata-writer'; BEGIN; SELECT * FROM sluice_offsets FOR UPDATE`); err != nil {
			t.Fatal(err)
		}
		return int(conn.PgConn().PID()), func() error { _, err := conn.Exec(ctx, "ROLLBACK"); return err }
	}
	pidA, releaseA := hold("a")
	pidB, releaseB := hold("b")
	locked := time.Now()

	load := make(chan loadgenResult, 1)
	go func() { load <- p.loadgen("--events", "6000", "--rate", "500", "--duplicates", "0", "--batch", "50") }()

	ended := `sluice_blocking_sessions_total{action="ended",target="` + p.targets["b"] + `"}`
	waitFor(t, bound+20*time.Second, "B's policy to end the stale session", func() bool { return metric(t, b.addr, ended) == 1 })
	endedAfter := time.Since(locked)
	if err := releaseB(); err == nil {
		t.Fatal("B's stale session still works: it was not ended")
	}
	reported := `sluice_blocking_sessions_total{action="reported",target="` + p.targets["a"] + `"}`
	waitFor(t, 10*time.Second, "A's policy to report the stale session", func() bool { return metric(t, a.addr, reported) == 1 })
	if got := metric(t, a.addr, `sluice_blocking_sessions_total{action="ended",target="`+p.targets["a"]+`"}`); got != 0 {
		t.Fatalf("report mode ended %v sessions", got)
	}
	res := <-load
	caughtUp := p.waitCount("b", res.Source, res.UniqueAccepted, 60*time.Second)
	bCaughtUp := time.Since(locked)
	if caughtUp != res.UniqueAccepted || res.Non2xx != 0 || res.Failed != 0 {
		t.Fatalf("loadgen %+v; B holds %d", res, caughtUp)
	}
	if n := p.count("a", res.Source); n == res.UniqueAccepted {
		t.Fatal("A caught up although its stale session is still there: it was ended")
	}

	status, err := p.command("ctl", "status").CombinedOutput()
	if err != nil {
		t.Fatalf("ctl status: %v\n%s", err, status)
	}
	for _, want := range []string{fmt.Sprintf("ENDED pid %d", pidB), fmt.Sprintf("REPORTED pid %d", pidA), "metadata-writer", "on sluice_offsets"} {
		if !strings.Contains(string(status), want) {
			t.Fatalf("ctl status does not say %q:\n%s", want, status)
		}
	}
	logB, _ := os.ReadFile(b.log)
	if !strings.Contains(string(logB), "blocker policy ended a session") || !strings.Contains(string(logB), fmt.Sprintf("pid=%d", pidB)) {
		t.Fatalf("B's log does not say which session it ended:\n%s", tail(string(logB), 2000))
	}

	// A busy session holding the same locks (a long SELECT … FOR UPDATE at
	// work) stalls B as long as it runs, and is never ended.
	busy := connect(t, testenv.AsApplication(t, p.dsns["b"]))
	if _, err := busy.Exec(ctx, `SET application_name = 'nightly-report'; BEGIN; SELECT * FROM sluice_offsets FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	busyDone := make(chan error, 1)
	go func() { _, err := busy.Exec(ctx, `SELECT pg_sleep(10); COMMIT`); busyDone <- err }()
	more := p.loadgen("--events", "500", "--duplicates", "0", "--batch", "50")
	spared := `sluice_blocking_sessions_total{action="spared",target="` + p.targets["b"] + `"}`
	waitFor(t, 15*time.Second, "B's policy to spare the busy session", func() bool { return metric(t, b.addr, spared) == 1 })
	if err := <-busyDone; err != nil {
		t.Fatalf("the busy session was ended: %v", err)
	}
	if got := metric(t, b.addr, ended); got != 1 {
		t.Fatalf("%s = %v after the busy session, want still 1", ended, got)
	}
	p.waitCount("b", more.Source, more.UniqueAccepted, 60*time.Second)

	if err := releaseA(); err != nil {
		t.Fatalf("A's session (report mode) was ended: %v", err)
	}
	p.waitCount("a", res.Source, res.UniqueAccepted, 60*time.Second)
	t.Logf("bound %v: B's stale session ended %v after it took its locks; B caught up %v after; ingest: %d accepted, %d non-2xx",
		bound, endedAfter.Round(100*time.Millisecond), bCaughtUp.Round(100*time.Millisecond), res.Accepted, res.Non2xx)
	record(t, "blocker_policy", map[string]any{"bound_s": bound.Seconds(), "ended_after_s": endedAfter.Seconds(),
		"b_caught_up_after_s": bCaughtUp.Seconds(), "accepted": res.Accepted, "non_2xx": res.Non2xx})
}

// TestTheBlockerPolicyWarnsAtStartWithoutItsRoles: an applier whose role
// can neither see nor end other roles' sessions says so at start, in its
// log and in ctl status with the GRANT that fixes it — and still applies.
func TestTheBlockerPolicyWarnsAtStartWithoutItsRoles(t *testing.T) {
	p := newPipeline(t, pipelineOptions{partitions: 1, extraTarget: map[string]string{
		"a": "    blocker_policy: {after: 30s, mode: terminate}",
	}})
	// Target a's applier connects as the application's role, which has
	// neither pg_read_all_stats nor pg_signal_backend.
	t.Setenv("SLUICE_TARGET_"+strings.ToUpper(strings.ReplaceAll(p.targets["a"], "-", "_"))+"_DSN", testenv.AsApplication(t, p.dsns["a"]))
	a := p.startApply("a")
	waitFor(t, 15*time.Second, "the warning in the applier's log", func() bool {
		b, _ := os.ReadFile(a.log)
		return strings.Contains(string(b), "blocker policy cannot act on other roles' sessions") && strings.Contains(string(b), "GRANT pg_read_all_stats, pg_signal_backend TO sluice_app")
	})
	var status []byte
	waitFor(t, 15*time.Second, "the warning in ctl status", func() bool {
		status, _ = p.command("ctl", "status", p.targets["a"]).CombinedOutput()
		return strings.Contains(string(status), "BLOCKER POLICY CANNOT ACT") && strings.Contains(string(status), "lacks pg_read_all_stats and pg_signal_backend")
	})
	p.startIngest()
	res := p.loadgen("--events", "200", "--duplicates", "0")
	p.waitCount("a", res.Source, 200, 30*time.Second)
}
