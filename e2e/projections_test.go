package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// shopTargets are the YAML of targets A (schema v1) and B (schema v2) of
// deploy/examples/shop.
func shopTargets(t *testing.T) map[string]string {
	t.Helper()
	dir, err := filepath.Abs("../deploy/examples/shop")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"a": fmt.Sprintf(`    migrations: %q
    facts_file: %q
    projections:
      - {name: customers, types: ["customer.*"], sql_file: %q, reset: "DELETE FROM customers"}`,
			filepath.Join(dir, "v1/migrations"), filepath.Join(dir, "v1/facts.sql"), filepath.Join(dir, "v1/customers.sql")),
		"b": fmt.Sprintf(`    migrations: %q
    facts_file: %q
    projections:
      - {name: clients, types: ["customer.*"], sql_file: %q}
      - {name: client_emails, types: ["customer.email_changed", "customer.registered"], sql_file: %q}`,
			filepath.Join(dir, "v2/migrations"), filepath.Join(dir, "v2/facts.sql"), filepath.Join(dir, "v2/clients.sql"), filepath.Join(dir, "v2/client_emails.sql")),
	}
}

// customerFacts is what a target holds about each customer, whatever its
// schema: name, email and the number of events applied to it.
func (p *pipeline) customerFacts(short string) map[string]string {
	p.t.Helper()
	query := map[string]string{
		"a": `SELECT id, coalesce(name, ''), coalesce(email, ''), changes FROM customers`,
		"b": `SELECT c.client_id, coalesce(c.display_name, ''), coalesce(e.email, ''), c.changes
		      FROM clients c LEFT JOIN client_emails e USING (client_id)`,
	}[short]
	rows, err := p.db(short).Query(context.Background(), query)
	if err != nil {
		p.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, name, email string
		var changes int64
		if err := rows.Scan(&id, &name, &email, &changes); err != nil {
			p.t.Fatal(err)
		}
		out[id] = fmt.Sprintf("%s|%s|%d", name, email, changes)
	}
	return out
}

// eventsPerSubject counts the distinct events about each customer in a
// target's ledger: what each row's change counter must equal.
func (p *pipeline) eventsPerSubject(short string) map[string]int64 {
	p.t.Helper()
	rows, err := p.db(short).Query(context.Background(), `SELECT subject, count(*) FROM sluice_events GROUP BY subject`)
	if err != nil {
		p.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var subject string
		var n int64
		if err := rows.Scan(&subject, &n); err != nil {
			p.t.Fatal(err)
		}
		out[subject] = n
	}
	return out
}

// TestTwoSchemasFedFromOneLogConverge: A in the application's schema v1, B
// in v2 (customers renamed to clients, emails moved to a child table), one
// stream of customer events with 10 % duplicate publishes, and a rewind of B
// in the middle. Both must hold the same facts, and every row's change
// counter must equal the number of distinct events about it: no effect
// applied twice.
func TestTwoSchemasFedFromOneLogConverge(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{partitions: 3, extraTarget: shopTargets(t)})
	p.startIngest()
	p.startApply("a")
	p.startApply("b")
	source := "shop/" + p.id
	done := make(chan loadgenResult, 1)
	go func() {
		done <- p.loadgen("--shop", "--source", source, "--events", "12000", "--duplicates", "0.1", "--rate", "3000", "--batch", "50")
	}()
	p.waitCount("b", source, 3000, time.Minute)
	out := p.ctl("rewind", p.targets["b"], "--to-offset", "earliest")
	t.Logf("rewound B mid-load: %s", strings.Split(out, "\n")[0])
	res := <-done
	for _, target := range []string{"a", "b"} {
		p.waitCount(target, source, res.UniqueAccepted, 2*time.Minute)
	}
	a, b := p.customerFacts("a"), p.customerFacts("b")
	if len(a) != 997 {
		t.Fatalf("A holds %d customers, want 997", len(a))
	}
	for id, fa := range a {
		if fb := b[id]; fa != fb {
			t.Errorf("customer %s: A says %s, B says %s", id, fa, fb)
		}
	}
	if len(b) != len(a) {
		t.Errorf("B holds %d customers, A %d", len(b), len(a))
	}
	perSubject := p.eventsPerSubject("a")
	for id, fa := range a {
		parts := strings.Split(fa, "|")
		if parts[len(parts)-1] != fmt.Sprint(perSubject[id]) {
			t.Errorf("customer %s changed %s times in A, but the ledger holds %d events about it", id, parts[len(parts)-1], perSubject[id])
		}
	}
}

// TestABrokenProjectionStallsOnlyItsTarget: B's projection names a column
// its table lacks. B applies nothing (ledger, offsets and tables move
// together), says which projection and why, dead-letters nothing, and
// resumes by itself once the column is added. A is untouched.
func TestABrokenProjectionStallsOnlyItsTarget(t *testing.T) {
	parallel(t)
	extra := shopTargets(t)
	extra["b"] = `    projections:
      - name: audit
        types: ["customer.*"]
        sql: "INSERT INTO audit (id, customer, kind) SELECT id, subject, type FROM batch"`
	p := newPipeline(t, pipelineOptions{partitions: 2, extraTarget: extra})
	mustExec(t, p.db("b"), `CREATE TABLE audit (id text PRIMARY KEY, customer text)`) // no kind column
	p.startIngest()
	p.startApply("a")
	p.startApply("b")
	source := "broken/" + p.id
	res := p.loadgen("--shop", "--source", source, "--events", "2000", "--duplicates", "0")
	p.waitCount("a", source, res.UniqueAccepted, time.Minute)

	var view map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		view = p.statusOf(t, "b")
		if strings.Contains(fmt.Sprint(view["replicas"]), "projection audit") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !strings.Contains(fmt.Sprint(view["replicas"]), `projection audit`) || !strings.Contains(fmt.Sprint(view["replicas"]), "kind") {
		t.Fatalf("ctl status does not name the broken projection and its error: %v", view["replicas"])
	}
	if n := p.count("b", source); n != 0 {
		t.Fatalf("B applied %d events to its ledger without its projection", n)
	}
	if out := p.ctl("dlq", "list", p.targets["b"]); !strings.Contains(out, "0 dead-lettered events") {
		t.Fatalf("a broken projection dead-lettered events:\n%s", out)
	}
	mustExec(t, p.db("b"), `ALTER TABLE audit ADD COLUMN kind text`)
	p.waitCount("b", source, res.UniqueAccepted, 90*time.Second)
	var audited int
	if err := p.db("b").QueryRow(context.Background(), `SELECT count(*) FROM audit`).Scan(&audited); err != nil || audited != res.UniqueAccepted {
		t.Fatalf("audit holds %d rows (%v), want %d", audited, err, res.UniqueAccepted)
	}
}

// TestRebuildRecomputesAProjectionFromTheLedgerWhileApplying: A's projection
// changes (names upper-cased) while events keep coming. `ctl rebuild`
// recomputes A's customers from A's own ledger; the applier waits during the
// rebuild and continues after it without a gap. At the end every row is what
// the new SQL makes of the whole log: upper-cased names, and change counters
// equal to the events about each customer in the ledger.
func TestRebuildRecomputesAProjectionFromTheLedgerWhileApplying(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{partitions: 3, extraTarget: shopTargets(t)})
	p.startIngest()
	a := p.startApply("a")
	source := "rebuild/" + p.id
	first := p.loadgen("--shop", "--source", source, "--events", "6000", "--duplicates", "0.1")
	p.waitCount("a", source, first.UniqueAccepted, time.Minute)

	// The new SQL, in a file of its own, and the configuration pointing at it.
	old, err := os.ReadFile("../deploy/examples/shop/v1/customers.sql")
	if err != nil {
		t.Fatal(err)
	}
	upper := strings.Replace(string(old), "(array_agg(data->>'name'", "(array_agg(upper(data->>'name')", 1)
	if upper == string(old) {
		t.Fatal("the example's SQL changed; this test's edit no longer applies")
	}
	newSQL := filepath.Join(p.dir, "customers-upper.sql")
	writeFile(t, newSQL, upper)
	cfg, err := os.ReadFile(p.config)
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("../deploy/examples/shop/v1/customers.sql")
	writeFile(t, p.config, strings.Replace(string(cfg), abs, newSQL, 1))
	if err := a.stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	a = p.startApply("a") // the applier runs the new SQL from now on

	more := make(chan loadgenResult, 1)
	go func() {
		more <- p.loadgen("--shop", "--source", source+"/more", "--events", "4000", "--duplicates", "0.1", "--rate", "1000")
	}()
	time.Sleep(time.Second)
	out, err := p.ctlErr("rebuild", p.targets["a"], "customers")
	if err != nil {
		t.Fatalf("ctl rebuild: %v\n%s", err, out)
	}
	t.Logf("ctl rebuild: %s", strings.TrimSpace(out))
	second := <-more
	p.waitCount("a", source+"/more", second.UniqueAccepted, time.Minute)

	facts := p.customerFacts("a")
	perSubject := p.eventsPerSubject("a")
	for id, f := range facts {
		parts := strings.Split(f, "|")
		if parts[0] != strings.ToUpper(parts[0]) {
			t.Errorf("customer %s is named %q: the rebuild did not recompute it with the new SQL", id, parts[0])
		}
		if parts[2] != fmt.Sprint(perSubject[id]) {
			t.Errorf("customer %s changed %s times, but the ledger holds %d events about it", id, parts[2], perSubject[id])
		}
	}
	if len(facts) != 997 {
		t.Errorf("A holds %d customers, want 997", len(facts))
	}
}
