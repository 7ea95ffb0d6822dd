package targetdb

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testenv"
)

// TestBlockersOfFollowsTheChainToTheIdleHolder replays the shape of a
// stalled migration: an application's transaction sits idle holding a row
// lock, a migration queues behind it for an exclusive lock, and the
// applier's insert queues behind the migration. The applier's direct
// blocker is the migration, which waits itself; the one to end is the idle
// holder at the end of the chain.
func TestBlockersOfFollowsTheChainToTheIdleHolder(t *testing.T) {
	dsn := testenv.Database(t)
	app := testenv.AsApplication(t, dsn)
	ctx := context.Background()
	const applierName = "sluice-apply-chain"

	holder := testenv.ConnAs(t, app, "billing-worker")
	if _, err := holder.Exec(ctx, `BEGIN; SELECT * FROM sluice_offsets FOR UPDATE; INSERT INTO sluice_offsets (topic, partition, next_offset) VALUES ('t', 0, 1)`); err != nil {
		t.Fatal(err)
	}
	migration := testenv.ConnAs(t, dsn, "migration")
	migrated := make(chan error, 1)
	go func() {
		_, err := migration.Exec(ctx, `SET lock_timeout = '20s'; ALTER TABLE sluice_offsets ADD COLUMN note text`)
		migrated <- err
	}()
	applier := testenv.ConnAs(t, dsn, applierName)
	applied := make(chan error, 1)
	go func() {
		_, err := applier.Exec(ctx, `SET lock_timeout = '20s'; SELECT count(*) FROM sluice_offsets`)
		applied <- err
	}()

	probe := testenv.Conn(t, dsn)
	var found []Blocker
	deadline := time.Now().Add(10 * time.Second)
	for len(found) < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		var err error
		if found, err = BlockersOf(ctx, probe, applierName, nil); err != nil {
			t.Fatal(err)
		}
	}
	byApp := map[string]Blocker{}
	for _, b := range found {
		byApp[b.Application] = b
	}
	idle, queued := byApp["billing-worker"], byApp["migration"]
	if len(found) != 2 || idle.PID == 0 || queued.PID == 0 {
		t.Fatalf("blockers %+v, want the migration and the idle holder", found)
	}
	if !queued.WaitsForLock || queued.State != "active" {
		t.Errorf("the migration: %+v, want active and waiting for a lock", queued)
	}
	if idle.WaitsForLock || !idle.IdleInTransaction() || idle.User != "sluice_app" || idle.Superuser ||
		!strings.Contains(idle.Locks, "on sluice_offsets") || !strings.Contains(idle.Query, "INSERT INTO sluice_offsets") {
		t.Errorf("the holder: %+v, want sluice_app idle in transaction holding locks on sluice_offsets", idle)
	}
	if idle.TransactionAge() <= 0 || idle.InState() < 0 {
		t.Errorf("the holder's ages: transaction %v, in state %v", idle.TransactionAge(), idle.InState())
	}

	// A session remembered from before is reported while it exists, even
	// once nothing waits for it.
	again, err := BlockersOf(ctx, probe, "nobody-waits", []Blocker{idle})
	if err != nil || len(again) != 1 || again[0].PID != idle.PID {
		t.Fatalf("a remembered holder: %+v, %v", again, err)
	}

	// Ending it is refused once it did anything since it was seen.
	if _, err := holder.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	if ended, err := EndBlocker(ctx, probe, idle); err != nil || ended {
		t.Fatalf("ended a session that was no longer idle since it was seen: %v, %v", ended, err)
	}
	fresh, err := BlockersOf(ctx, probe, applierName, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range fresh {
		if b.PID == idle.PID {
			idle = b
		}
	}
	if ended, err := EndBlocker(ctx, probe, idle); err != nil || !ended {
		t.Fatalf("EndBlocker on the idle holder: %v, %v", ended, err)
	}
	for _, ch := range []chan error{migrated, applied} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("after the holder was ended: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the chain did not clear after the holder was ended")
		}
	}
}

// TestTheApplicationRoleLacksTheRolesToActOnOthers: MissingRoles names
// both, and without pg_read_all_stats another role's session shows no
// state, so EndBlocker's guard finds nothing to end.
func TestTheApplicationRoleLacksTheRolesToActOnOthers(t *testing.T) {
	dsn := testenv.Database(t)
	ctx := context.Background()
	app := testenv.Conn(t, testenv.AsApplication(t, dsn))
	missing, role, err := MissingRoles(ctx, app)
	if err != nil || role != "sluice_app" || strings.Join(missing, ",") != "pg_read_all_stats,pg_signal_backend" {
		t.Fatalf("MissingRoles as the application role: %v %q %v, want both", missing, role, err)
	}
	if missing, _, err := MissingRoles(ctx, testenv.Conn(t, dsn)); err != nil || len(missing) != 0 {
		t.Fatalf("MissingRoles as the stack's sluice role (granted both): %v %v", missing, err)
	}
	victim := testenv.ConnAs(t, dsn, "someone")
	if _, err := victim.Exec(ctx, `BEGIN; SELECT * FROM sluice_offsets FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	var xact time.Time
	if err := testenv.Conn(t, dsn).QueryRow(ctx, `SELECT xact_start FROM pg_stat_activity WHERE pid = $1`, victim.PgConn().PID()).Scan(&xact); err != nil {
		t.Fatal(err)
	}
	seen, err := BlockersOf(ctx, testenv.Conn(t, dsn), "nobody", []Blocker{{PID: int(victim.PgConn().PID()), XactStart: xact}})
	if err != nil || len(seen) != 1 || !seen[0].IdleInTransaction() {
		t.Fatalf("%+v %v", seen, err)
	}
	if ended, err := EndBlocker(ctx, app, seen[0]); ended || err != nil {
		t.Fatalf("EndBlocker without the roles: %v, %v; want nothing ended", ended, err)
	}
	var alive bool
	if err := testenv.Conn(t, dsn).QueryRow(ctx, `SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $1`, seen[0].PID).Scan(&alive); err != nil || !alive {
		t.Fatalf("the session was ended after all: %v", err)
	}
}

// TestARememberedSessionInANewTransactionStartsNoChain: a session seen
// blocking the applier commits, and in a new transaction waits on an
// unrelated idle one. The unrelated session never held up the applier and
// must not be named (nor ended by the blocker policy).
func TestARememberedSessionInANewTransactionStartsNoChain(t *testing.T) {
	dsn := testenv.Database(t)
	ctx := context.Background()
	probe := testenv.Conn(t, dsn)
	if _, err := probe.Exec(ctx, `CREATE TABLE unrelated (id int PRIMARY KEY); INSERT INTO unrelated VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	formerBlocker := testenv.ConnAs(t, dsn, "former-blocker")
	if _, err := formerBlocker.Exec(ctx, `BEGIN; SELECT * FROM sluice_offsets FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	var remembered Blocker
	if err := probe.QueryRow(ctx, `SELECT pid, xact_start FROM pg_stat_activity WHERE application_name = 'former-blocker'`).
		Scan(&remembered.PID, &remembered.XactStart); err != nil {
		t.Fatal(err)
	}
	if again, err := BlockersOf(ctx, probe, "nobody", []Blocker{remembered}); err != nil || len(again) != 1 {
		t.Fatalf("the remembered session in its transaction: %+v, %v; want it named", again, err)
	}

	unrelated := testenv.ConnAs(t, dsn, "unrelated-idle")
	if _, err := unrelated.Exec(ctx, `BEGIN; UPDATE unrelated SET id = 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := formerBlocker.Exec(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := formerBlocker.Exec(ctx, `SET lock_timeout = '20s'; BEGIN; UPDATE unrelated SET id = 1; ROLLBACK`)
		waiting <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waits bool
		if err := probe.QueryRow(ctx, `SELECT wait_event_type IS NOT DISTINCT FROM 'Lock' FROM pg_stat_activity WHERE pid = $1`,
			remembered.PID).Scan(&waits); err != nil {
			t.Fatal(err)
		}
		if waits {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the former blocker never waited on the unrelated session")
		}
		time.Sleep(50 * time.Millisecond)
	}
	found, err := BlockersOf(ctx, probe, "nobody", []Blocker{remembered})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 0 {
		t.Errorf("named %+v: the remembered pid is in another transaction now, and what it waits on never held up the applier", found)
	}
	if _, err := unrelated.Exec(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; err != nil {
		t.Fatal(err)
	}
}
