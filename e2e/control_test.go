package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// ctl runs `sluice ctl ARGS…` and returns its output, failing the test on a
// non-zero exit.
func (p *pipeline) ctl(args ...string) string {
	p.t.Helper()
	out, err := p.ctlErr(args...)
	if err != nil {
		p.t.Fatalf("sluice ctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (p *pipeline) ctlErr(args ...string) (string, error) {
	out, err := p.command(append([]string{"ctl"}, args...)...).CombinedOutput()
	return string(out), err
}

// waitAll waits until every replica reports series at value, and returns
// how long that took.
func waitAll(t *testing.T, replicas []*applier, series string, value float64, timeout time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	for time.Since(began) < timeout {
		all := true
		for _, r := range replicas {
			if v, err := scrape(r.addr, series); err != nil || v != value {
				all = false
			}
		}
		if all {
			return time.Since(began)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("not every replica reports %s = %v after %v", series, value, timeout)
	return 0
}

// TestPauseStopsEveryReplicaWithinASecond pauses B under load with two
// replicas of each applier: B's rows stop growing within a second on both,
// A goes on, ingest is unaffected; after resume B catches up exactly.
func TestPauseStopsEveryReplicaWithinASecond(t *testing.T) {
	p := newPipeline(t, pipelineOptions{})
	p.startIngest()
	p.startApply("a")
	p.startApplyAt("a", freeAddr(t))
	b1 := p.startApply("b")
	b2 := p.startApplyAt("b", freeAddr(t))
	source := "pause/" + p.id
	load := make(chan loadgenResult, 1)
	go func() {
		load <- p.loadgen("--source", source, "--events", "12000", "--duplicates", "0", "--rate", "400", "--batch", "20")
	}()
	p.waitCount("b", source, 1500, time.Minute)

	out := p.ctl("pause", p.targets["b"])
	pausedAt := time.Now()
	if !strings.Contains(out, "paused") {
		t.Fatalf("ctl pause said: %s", out)
	}
	paused := fmt.Sprintf(`sluice_target_paused{target=%q}`, p.targets["b"])
	obeyed := waitAll(t, []*applier{b1, b2}, paused, 1, 5*time.Second)
	t.Logf("both replicas of B report paused %v after ctl pause returned", obeyed.Round(time.Millisecond))
	if obeyed > time.Second {
		t.Errorf("replicas obeyed pause after %v; the promise is a second", obeyed)
	}
	// Rows stop growing: allow the batch in flight to commit, then none.
	time.Sleep(time.Second)
	frozen := p.count("b", source)
	aBefore := p.count("a", source)
	time.Sleep(3 * time.Second)
	if n := p.count("b", source); n != frozen {
		t.Errorf("B grew from %d to %d rows while paused", frozen, n)
	}
	if n := p.count("a", source); n <= aBefore {
		t.Errorf("A stopped too (%d → %d rows): pausing B must not touch A", aBefore, n)
	}
	if out := p.ctl("pause", p.targets["b"]); !strings.Contains(out, "already paused") {
		t.Errorf("pausing a paused target said: %s", out)
	}
	view := p.statusOf(t, "b")
	if view["state"] != "paused" {
		t.Errorf("ctl status says B is %v", view["state"])
	}
	sessions := 0
	if err := connect(t, p.svc.pgB).QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle'`,
		"sluice-apply-"+p.targets["b"]).Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	if sessions != 0 {
		t.Errorf("a paused applier has %d non-idle sessions on B", sessions)
	}

	p.ctl("resume", p.targets["b"])
	resumed := waitAll(t, []*applier{b1, b2}, paused, 0, 5*time.Second)
	res := <-load
	if res.Non2xx != 0 || res.Failed != 0 {
		t.Errorf("ingest was affected by pausing B: %+v", res)
	}
	for _, target := range []string{"a", "b"} {
		p.waitCount(target, source, res.UniqueAccepted, 2*time.Minute)
		got, rows := p.ids(target, source)
		if rows != res.UniqueAccepted || sameSet(res.ids, got) != nil {
			t.Errorf("target %s: %d rows, want exactly the %d accepted", target, rows, res.UniqueAccepted)
		}
	}
	record(t, "control-pause", map[string]any{
		"pause_obeyed_by_both_replicas_seconds": obeyed.Seconds(), "resume_obeyed_seconds": resumed.Seconds(),
		"paused_for_seconds": time.Since(pausedAt).Seconds(),
	})
}

// TestRewindRestoresDeletedRows deletes B's rows after a time T and rewinds
// B to T: B must equal A again, with no duplicates.
func TestRewindRestoresDeletedRows(t *testing.T) {
	p := newPipeline(t, pipelineOptions{})
	p.startIngest()
	p.startApply("a")
	p.startApply("b")
	p.startApplyAt("b", freeAddr(t))
	before := p.loadgen("--source", "before/"+p.id, "--events", "3000", "--duplicates", "0")
	time.Sleep(1100 * time.Millisecond) // record timestamps have millisecond precision
	T := time.Now().UTC()
	time.Sleep(100 * time.Millisecond)
	after := p.loadgen("--source", "after/"+p.id, "--events", "3000", "--duplicates", "0")
	for _, target := range []string{"a", "b"} {
		p.waitCount(target, "before/"+p.id, before.UniqueAccepted, time.Minute)
		p.waitCount(target, "after/"+p.id, after.UniqueAccepted, time.Minute)
	}
	mustExec(t, p.db("b"), `DELETE FROM sluice_events WHERE source = $1`, "after/"+p.id)
	if out, err := p.ctlErr("verify", p.targets["a"], p.targets["b"]); err == nil {
		t.Fatalf("verify found no difference after deleting rows:\n%s", out)
	}

	began := time.Now()
	out := p.ctl("rewind", p.targets["b"], "--to", T.Format(time.RFC3339Nano))
	t.Logf("ctl rewind: %s", out)
	p.waitCount("b", "after/"+p.id, after.UniqueAccepted, 2*time.Minute)
	restored := time.Since(began)
	for src, want := range map[string]int{"before/" + p.id: before.UniqueAccepted, "after/" + p.id: after.UniqueAccepted} {
		if _, rows := p.ids("b", src); rows != want {
			t.Errorf("B holds %d rows of %s, want %d", rows, src, want)
		}
	}
	if out, err := p.ctlErr("verify", p.targets["a"], p.targets["b"]); err != nil || !strings.Contains(out, "agree") {
		t.Errorf("verify after the rewind: %v\n%s", err, out)
	}
	record(t, "control-rewind", map[string]any{"rows_restored": after.UniqueAccepted, "seconds_to_restore": restored.Seconds()})
}

// TestRewindCompletesOnceAcrossAReplicaRestart kills one of B's two replicas
// right after a rewind is issued and restarts it: every partition must be
// rewound exactly once, and B must end equal to A.
func TestRewindCompletesOnceAcrossAReplicaRestart(t *testing.T) {
	p := newPipeline(t, pipelineOptions{})
	p.startIngest()
	p.startApply("a")
	b1 := p.startApply("b")
	b2addr := freeAddr(t)
	b2 := p.startApplyAt("b", b2addr)
	res := p.loadgen("--events", "20000", "--duplicates", "0")
	p.waitCount("a", res.Source, res.UniqueAccepted, 2*time.Minute)
	p.waitCount("b", res.Source, res.UniqueAccepted, 2*time.Minute)

	p.ctl("rewind", p.targets["b"], "--to-offset", "earliest")
	time.Sleep(150 * time.Millisecond)
	b2.kill()
	time.Sleep(500 * time.Millisecond)
	b2 = p.startApplyAt("b", b2addr)

	// Every partition's offsets row carries the rewind, and B is complete.
	conn := p.db("b")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var rewound, atEnd int
		err := conn.QueryRow(context.Background(), `SELECT count(DISTINCT rewind_id) FILTER (WHERE rewind_id IS NOT NULL),
			count(*) FILTER (WHERE rewind_id IS NOT NULL) FROM sluice_offsets WHERE topic = $1`, p.topic).Scan(&rewound, &atEnd)
		if err != nil {
			t.Fatal(err)
		}
		if rewound == 1 && atEnd == p.partitions {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes %d partitions carry the rewind", atEnd)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var applied int64
	for time.Now().Before(deadline) {
		if err := conn.QueryRow(context.Background(), `SELECT sum(next_offset) FROM sluice_offsets WHERE topic = $1`, p.topic).Scan(&applied); err != nil {
			t.Fatal(err)
		}
		if applied == p.topicEnd() {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got, rows := p.ids("b", res.Source); rows != res.UniqueAccepted || sameSet(res.ids, got) != nil {
		t.Errorf("B holds %d rows, want exactly %d", rows, res.UniqueAccepted)
	}
	// Exactly once: across both replicas' logs (the killed one's included),
	// each partition was rewound one time.
	rewinds := 0
	for _, pr := range p.procs {
		if strings.HasPrefix(pr.name, "apply-b") {
			b, _ := os.ReadFile(pr.log)
			rewinds += strings.Count(string(b), `msg="partition rewound"`)
		}
	}
	if rewinds != p.partitions {
		t.Errorf("partitions were rewound %d times in all; want once each (%d)", rewinds, p.partitions)
	}
	_ = b1
}
