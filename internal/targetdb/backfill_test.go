package targetdb

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/testenv"
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
