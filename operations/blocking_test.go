package operations

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
	"github.com/sluicehq/sluice/internal/testenv"
)

// TestBlockingSessionsNamesTheStaleLockHolder replays the report's 14:24:
// a session idle in transaction holds locks on the ledger, and the applier's
// session waits behind it.
func TestBlockingSessionsNamesTheStaleLockHolder(t *testing.T) {
	dsn := testenv.Database(t)
	target := "t" + testenv.ID()
	ctx := context.Background()

	holder := testenv.ConnAs(t, dsn, "migration-tool")
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE sluice_events IN ROW EXCLUSIVE MODE; INSERT INTO sluice_offsets (topic, partition, next_offset) VALUES ('x', 0, 1)`); err != nil {
		t.Fatal(err)
	}
	var holderPID int
	if err := holder.PgConn().Exec(ctx, "SELECT 1").Close(); err != nil {
		t.Fatal(err)
	}
	holderPID = int(holder.PgConn().PID())

	probe := testenv.Conn(t, dsn)
	// Before the transaction is a second old, it is not reported.
	early, err := BlockingSessions(ctx, probe, Target{Name: target}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(early) != 0 {
		t.Fatalf("a young transaction was reported: %+v", early)
	}

	// The applier's session waits behind the holder's row lock.
	applier := testenv.ConnAs(t, dsn, kafkaadmin.GroupID(target))
	waiting := make(chan error, 1)
	go func() {
		_, err := applier.Exec(ctx, `SET lock_timeout = '5s'; INSERT INTO sluice_offsets (topic, partition, next_offset) VALUES ('x', 0, 2) ON CONFLICT (topic, partition) DO UPDATE SET next_offset = 2`)
		waiting <- err
	}()
	time.Sleep(1200 * time.Millisecond)
	found, err := BlockingSessions(ctx, probe, Target{Name: target}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 {
		t.Fatalf("found %d sessions, want the holder alone: %+v", len(found), found)
	}
	b := found[0]
	if b.PID != holderPID || b.Application != "migration-tool" || !strings.HasPrefix(b.State, "idle in transaction") {
		t.Errorf("blocking session %+v, want pid %d of migration-tool, idle in transaction", b, holderPID)
	}
	for _, want := range []string{"blocks " + kafkaadmin.GroupID(target), "holds RowExclusiveLock on sluice_events"} {
		if !strings.Contains(b.Why, want) {
			t.Errorf("why %q does not say %q", b.Why, want)
		}
	}
	if b.TransactionAge < 1 {
		t.Errorf("transaction age %.1fs, want over a second", b.TransactionAge)
	}
	_ = tx.Rollback(ctx)
	if err := <-waiting; err != nil {
		t.Fatalf("the applier's write failed after the holder let go: %v", err)
	}
}

// TestALockOnAProjectionsTableIsNamed: the incident's open transaction held
// locks on the application's tables, which projections write. While the
// breaker is open none of the applier's sessions waits, so the holder must
// be found by the tables the projections write, schema-qualified or not;
// a lock on a table no projection writes is not the target's business.
func TestALockOnAProjectionsTableIsNamed(t *testing.T) {
	dsn := testenv.Database(t)
	ctx := context.Background()
	setup := testenv.Conn(t, dsn)
	if _, err := setup.Exec(ctx, `CREATE SCHEMA shop; CREATE TABLE clients (id text PRIMARY KEY);
		CREATE TABLE shop.orders (id text PRIMARY KEY); CREATE TABLE audit (id text)`); err != nil {
		t.Fatal(err)
	}
	ps, err := targetdb.CompileProjections([]targetdb.Projection{
		{Name: "clients", SQL: "INSERT INTO clients (id) SELECT subject FROM batch ON CONFLICT DO NOTHING"},
		{Name: "orders", SQL: "SELECT 1", Tables: []string{"shop.orders"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	target := Target{Name: "t" + testenv.ID(), Projections: ps}
	hold := func(app, stmt string) int {
		conn := testenv.ConnAs(t, dsn, app)
		if _, err := conn.Exec(ctx, "BEGIN; "+stmt); err != nil {
			t.Fatal(err)
		}
		return int(conn.PgConn().PID())
	}
	clients := hold("stale-writer", `UPDATE clients SET id = id; LOCK TABLE clients IN SHARE MODE`)
	orders := hold("migration", `LOCK TABLE shop.orders IN ACCESS EXCLUSIVE MODE`)
	hold("auditor", `LOCK TABLE audit IN ACCESS EXCLUSIVE MODE`)
	time.Sleep(1100 * time.Millisecond)

	found, err := BlockingSessions(ctx, testenv.Conn(t, dsn), target, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	why := map[int]string{}
	for _, b := range found {
		why[b.PID] = b.Why
	}
	if len(found) != 2 || !strings.Contains(why[clients], "on clients") || !strings.Contains(why[orders], "AccessExclusiveLock on orders") {
		t.Fatalf("found %+v; want the holders of clients (pid %d) and shop.orders (pid %d), not the auditor", found, clients, orders)
	}
}
