package operations

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
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
	early, err := BlockingSessions(ctx, probe, target, 2*time.Second)
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
	found, err := BlockingSessions(ctx, probe, target, time.Second)
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
