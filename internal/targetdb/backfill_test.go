package targetdb

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/schema"
)

// sourceTarget is an old target holding n events over three partitions.
func sourceTarget(t *testing.T, n int) (string, map[int]int64) {
	t.Helper()
	dsn := testenv.Database(t)
	pool, err := NewPool(dsn, Session{ApplicationName: "sluice-test"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	offsets := map[int]int64{}
	for p := range 3 {
		var recs []Record
		for i := range n / 3 {
			recs = append(recs, Decode(kafka.Message{Topic: "events", Partition: p, Offset: int64(i),
				Value: fmt.Appendf(nil, `{"specversion":"1.0","id":"%d-%d","source":"s","type":"t","subject":"s%d"}`, p, i, i%7)}))
		}
		if _, err := Apply(context.Background(), pool, recs, CursorAfter("events", 0, recs[len(recs)-1].Msg), nil); err != nil {
			t.Fatal(err)
		}
		offsets[p] = int64(n / 3)
	}
	return dsn, offsets
}

func newTarget(t *testing.T, lockTimeout time.Duration) (*pgxpool.Pool, *Projections, func(string) int64) {
	t.Helper()
	dsn := testenv.Database(t)
	conn := testenv.Conn(t, dsn)
	if _, err := conn.Exec(context.Background(), `CREATE TABLE effects (id text)`); err != nil {
		t.Fatal(err)
	}
	pool, err := NewPool(dsn, Session{ApplicationName: "sluice-test", LockTimeout: lockTimeout}, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ps, err := CompileProjections([]Projection{{Name: "effects", SQL: `INSERT INTO effects SELECT id FROM batch`}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	count := func(sql string) int64 {
		var n int64
		if err := conn.QueryRow(context.Background(), sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return pool, ps, count
}

func TestABackfillKilledHalfWayResumesWithoutDoubleEffects(t *testing.T) {
	srcDSN, srcOffsets := sourceTarget(t, 900)
	dst, ps, count := newTarget(t, time.Second)
	src := testenv.Conn(t, srcDSN)

	ctx, kill := context.WithCancel(context.Background())
	_, err := Backfill(ctx, src, dst, "events", ps, BackfillOptions{Chunk: 100, Progress: func(p BackfillProgress) {
		if p.Done >= 400 {
			kill()
		}
	}})
	if err == nil {
		t.Fatal("the killed backfill finished")
	}
	if copied := count(`SELECT count(*) FROM sluice_events`); copied < 400 || copied >= 900 {
		t.Fatalf("the killed backfill left %d events", copied)
	}
	src = testenv.Conn(t, srcDSN) // the old session's snapshot died with it
	res, err := Backfill(context.Background(), src, dst, "events", ps, BackfillOptions{Chunk: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got := count(`SELECT count(*) FROM sluice_events`); got != 900 {
		t.Fatalf("%d events after the rerun, want 900", got)
	}
	if got := count(`SELECT count(*) FROM effects`); got != 900 {
		t.Fatalf("%d effects after a kill and a rerun, want 900: each event's once", got)
	}
	if res.Copied >= 900 {
		t.Errorf("the rerun copied %d events: it should resume, not start over", res.Copied)
	}
	for p, want := range srcOffsets {
		if o, _ := LoadOffset(context.Background(), dst, "events", p); o.Next != want {
			t.Errorf("partition %d: the new target continues at %d, want the snapshot's %d", p, o.Next, want)
		}
	}
}

func TestABackfillWaitsOutALockOnTheNewTarget(t *testing.T) {
	srcDSN, _ := sourceTarget(t, 300)
	dst, ps, count := newTarget(t, 200*time.Millisecond)
	locker, err := dst.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Another session (not the pool's only one) holds the ledger.
	lockConn := testenv.Conn(t, locker.Conn().Config().ConnString())
	locker.Release()
	tx, err := lockConn.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), `LOCK TABLE sluice_events IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(2 * time.Second); _ = tx.Rollback(context.Background()) }()
	var retries atomic.Int32
	_, err = Backfill(context.Background(), testenv.Conn(t, srcDSN), dst, "events", ps, BackfillOptions{Chunk: 50,
		Retrying: func(error, int) { retries.Add(1) }})
	if err != nil {
		t.Fatalf("a lock on the new target failed the backfill: %v", err)
	}
	if retries.Load() == 0 {
		t.Fatal("the backfill never waited on the lock: the test proves nothing")
	}
	if got := count(`SELECT count(*) FROM effects`); got != 300 {
		t.Fatalf("%d effects, want 300", got)
	}
}

// TestABackfillIsolatesWhatTheNewSchemaRefusesAndFinishes: the new target's
// projection refuses three events (a CHECK of its own); they go to the dead
// letter taker as CloudEvents, the rest of the ledger applies, and the
// backfill finishes instead of failing at the same event on every run.
func TestABackfillIsolatesWhatTheNewSchemaRefusesAndFinishes(t *testing.T) {
	srcDSN, _ := sourceTarget(t, 600)
	dst, ps, count := newTarget(t, time.Second)
	if _, err := dst.Exec(context.Background(), `ALTER TABLE effects ADD CONSTRAINT refuses_13 CHECK (id NOT LIKE '%-13')`); err != nil {
		t.Fatal(err)
	}
	var letters []string
	res, err := Backfill(context.Background(), testenv.Conn(t, srcDSN), dst, "events", ps, BackfillOptions{Chunk: 64,
		DeadLetter: func(_ context.Context, p int, off int64, value []byte, cause error) error {
			ev, err := schema.DecodeEvent(value)
			if err != nil || Classify(cause) != Permanent || off != 13 {
				t.Errorf("dead letter %d/%d: %s (%v), cause %v", p, off, value, err, cause)
			}
			letters = append(letters, ev.ID)
			return nil
		}})
	if err != nil {
		t.Fatalf("the backfill stopped at a refused event: %v", err)
	}
	sort.Strings(letters)
	if fmt.Sprint(letters) != "[0-13 1-13 2-13]" || res.DeadLettered != 3 {
		t.Errorf("dead-lettered %v (%d), want the three refused events", letters, res.DeadLettered)
	}
	if n := count(`SELECT count(*) FROM sluice_events`); n != 597 {
		t.Errorf("the new ledger holds %d events, want 597", n)
	}
	if n := count(`SELECT count(*) FROM effects`); n != 597 {
		t.Errorf("the projection applied %d events, want 597", n)
	}
}

// TestABackfillWaitsOutALockOnTheOldTarget: a migration holds the old
// target's ledger locked when the backfill starts; it waits, says so, and
// finishes once the lock goes.
func TestABackfillWaitsOutALockOnTheOldTarget(t *testing.T) {
	srcDSN, _ := sourceTarget(t, 300)
	dst, ps, count := newTarget(t, time.Second)
	ctx := context.Background()
	holder := testenv.Conn(t, srcDSN)
	if _, err := holder.Exec(ctx, `BEGIN; LOCK TABLE sluice_events IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(1500 * time.Millisecond)
		_, _ = holder.Exec(ctx, `ROLLBACK`)
	}()
	src, err := Connect(ctx, srcDSN, Session{ApplicationName: "sluice-backfill", LockTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(ctx)
	var waits atomic.Int32
	if _, err := Backfill(ctx, src, dst, "events", ps, BackfillOptions{Chunk: 100,
		Retrying: func(error, int) { waits.Add(1) }}); err != nil {
		t.Fatalf("a lock on the old target failed the backfill: %v", err)
	}
	if waits.Load() == 0 {
		t.Error("the backfill never said it waited on the old target's lock")
	}
	if n := count(`SELECT count(*) FROM sluice_events`); n != 300 {
		t.Errorf("the new ledger holds %d events, want 300", n)
	}
}
