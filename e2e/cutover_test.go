package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCutoverToANewClusterWithANewSchema does the migration of the report
// the sluice way, under steady load: B (a new cluster, schema v2) is
// backfilled from A's ledger — the first backfill killed with -9 half way
// and run again, into a ledger a migration holds locked —, its applier catches up from the log, verify and
// cutover-check say GO, and A is retired. Ingest answers 202 throughout and
// A's lag stays low during the backfill; B's change counters prove no effect
// was applied twice.
func TestCutoverToANewClusterWithANewSchema(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{partitions: 3, extraTarget: shopTargets(t)})
	p.startIngest()
	a := p.startApply("a")
	obs := p.observe(a, nil)
	source := "cutover/" + p.id
	load := make(chan loadgenResult, 1)
	go func() {
		load <- p.loadgen("--shop", "--source", source, "--events", "40000", "--duplicates", "0.1", "--rate", "1000", "--batch", "20")
	}()
	p.waitCount("a", source, 8000, time.Minute)
	figures := map[string]any{}
	step := func(name string, began time.Time) { figures[name+"_seconds"] = time.Since(began).Seconds() }

	// Backfill, killed with -9 half way, then run again: it resumes.
	began := time.Now()
	killed := p.start("backfill-killed", "backfill", "--target", p.targets["b"], "--from", p.targets["a"], "--rate", "4000", "--chunk", "500")
	time.Sleep(1500 * time.Millisecond)
	killed.kill()
	var partial int
	if err := p.db("b").QueryRow(context.Background(), `SELECT count(*) FROM sluice_events`).Scan(&partial); err != nil {
		t.Fatal(err)
	}
	t.Logf("the killed backfill had copied %d events", partial)
	// The second run starts while a migration on B holds its ledger
	// exclusively for 4 seconds: it waits it out and goes on.
	_, unlocked := holdLock(t, p.dsns["b"], 4*time.Second, `SET application_name = 'migration'`, `LOCK TABLE sluice_events IN ACCESS EXCLUSIVE MODE`)
	out, err := p.command("backfill", "--target", p.targets["b"], "--from", p.targets["a"], "--rate", "20000").CombinedOutput()
	if err != nil {
		t.Fatalf("backfill: %v\n%s", err, out)
	}
	select {
	case <-unlocked:
	default:
		t.Fatalf("the backfill finished while B's ledger was still locked:\n%s", out)
	}
	step("backfill", began)
	figures["events_copied_by_the_killed_backfill"] = partial
	t.Logf("backfill: %s", lastLine(string(out)))

	// B's applier continues from the log where the snapshot was.
	began = time.Now()
	p.startApply("b")
	res := <-load
	for _, target := range []string{"a", "b"} {
		p.waitCount(target, source, res.UniqueAccepted, 2*time.Minute)
	}
	step("catch_up_after_load", began)

	began = time.Now()
	if out, err := p.ctlErr("verify", p.targets["a"], p.targets["b"]); err != nil || !strings.Contains(out, "agree") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	step("verify", began)
	began = time.Now()
	out, err = p.command("ctl", "cutover-check", p.targets["a"], p.targets["b"]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "GO:") {
		t.Fatalf("cutover-check: %v\n%s", err, out)
	}
	step("cutover_check", began)
	t.Logf("cutover-check:\n%s", out)

	// The same facts in both schemas, each effect once.
	facts, factsB := p.customerFacts("a"), p.customerFacts("b")
	perSubject := p.eventsPerSubject("b")
	for id, fa := range facts {
		if factsB[id] != fa {
			t.Errorf("customer %s: A says %s, B says %s", id, fa, factsB[id])
		}
		if parts := strings.Split(factsB[id], "|"); parts[2] != fmt.Sprint(perSubject[id]) {
			t.Errorf("customer %s changed %s times in B, but B's ledger holds %d events about it: an effect applied twice", id, parts[2], perSubject[id])
		}
	}

	// One row of a projection table tampered with (the ledgers untouched):
	// verify and cutover-check must say NO and name the row, then GO again
	// once it is put back.
	db := p.db("b")
	var tampered, name string
	if err := db.QueryRow(context.Background(), `SELECT client_id, coalesce(display_name, '') FROM clients ORDER BY client_id LIMIT 1`).Scan(&tampered, &name); err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, `UPDATE clients SET display_name = 'tampered' WHERE client_id = $1`, tampered)
	if out, err := p.ctlErr("verify", p.targets["a"], p.targets["b"]); err == nil || !strings.Contains(out, "REPLAY DIFFERS") || !strings.Contains(out, `"tampered"`) || !strings.Contains(out, tampered) {
		t.Errorf("verify after a projection row of B was tampered with: %v\n%s", err, out)
	}
	if out, err := p.ctlErr("cutover-check", p.targets["a"], p.targets["b"]); err == nil || !strings.Contains(out, "NO GO") || !strings.Contains(out, tampered) {
		t.Errorf("cutover-check after a projection row of B was tampered with: %v\n%s", err, out)
	}
	mustExec(t, db, `UPDATE clients SET display_name = nullif($2, '') WHERE client_id = $1`, tampered, name)
	if out, err := p.ctlErr("cutover-check", p.targets["a"], p.targets["b"]); err != nil || !strings.Contains(out, "GO:") {
		t.Errorf("cutover-check once the row was put back: %v\n%s", err, out)
	}

	began = time.Now()
	out, err = p.command("ctl", "retire", p.targets["a"]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "every replica stopped, consumer group removed") {
		t.Fatalf("retire: %v\n%s", err, out)
	}
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		t.Fatal("A's applier still runs after ctl retire")
	}
	step("retire", began)

	o := obs.snapshot()
	figures["events_accepted"] = res.UniqueAccepted
	figures["non_2xx_answers"] = res.Non2xx
	figures["max_lag_seconds_a"] = o.MaxLagA
	record(t, "cutover", figures)
	if res.Non2xx != 0 || res.Failed != 0 {
		t.Errorf("ingest noticed the cutover: %d non-2xx answers, %d failed", res.Non2xx, res.Failed)
	}
	if o.MaxLagA > 3 {
		t.Errorf("A's lag reached %.1fs during the backfill; the backfill must not slow A", o.MaxLagA)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
