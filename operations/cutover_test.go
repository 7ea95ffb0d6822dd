package operations

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/deadletter"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
	"github.com/sluicehq/sluice/internal/testenv"
)

// The old target dead-lettered events its schema refused; the new target's
// schema may take them. Backfill offers them, through the new target's
// projections, once however often it runs, and reports what it refused too.
func TestBackfillOffersTheOldTargetsDeadLettersToTheNewOne(t *testing.T) {
	cluster := testenv.Kafka(t)
	old, fresh := "old"+testenv.ID(), "new"+testenv.ID()
	ctx := context.Background()
	if err := cluster.EnsureTopics(ctx, 1, kafkaadmin.DLQTopicSpec(old)); err != nil {
		t.Fatal(err)
	}
	w := cluster.NewWriter(kafkaadmin.WriterConfig{Topic: kafkaadmin.DLQTopic(old)})
	defer w.Close()
	for i, amount := range []string{`12`, `"twelve"`, `7`} {
		orig := kafka.Message{Topic: "sluice.events", Partition: 0, Offset: int64(100 + i),
			Value: []byte(`{"specversion":"1.0","id":"d` + string(rune('0'+i)) + `","source":"s","type":"t","data":{"amount":` + amount + `}}`)}
		if err := w.WriteMessages(ctx, deadletter.Wrap(orig, context.DeadlineExceeded, "permanent", old, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	oldDSN, newDSN := testenv.Database(t), testenv.Database(t)
	if _, err := testenv.Conn(t, newDSN).Exec(ctx, `CREATE TABLE amounts (id text PRIMARY KEY, amount int)`); err != nil {
		t.Fatal(err)
	}
	ps, err := targetdb.CompileProjections([]targetdb.Projection{{Name: "amounts", SQL: `INSERT INTO amounts SELECT id, (data->>'amount')::int FROM batch`}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ops := New(Config{Cluster: cluster, Targets: []Target{{Name: old, DSN: oldDSN}, {Name: fresh, DSN: newDSN, Projections: ps}}})
	defer ops.Close()
	res, err := ops.Backfill(ctx, fresh, old, targetdb.BackfillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.FromDLQ != 2 || len(res.Refused) != 1 || res.Refused[0].ID != "d1" {
		t.Fatalf("from the DLQ: %d applied, refused %+v; want d0 and d2 applied, d1 refused", res.FromDLQ, res.Refused)
	}
	again, err := ops.Backfill(ctx, fresh, old, targetdb.BackfillOptions{})
	if err != nil || again.FromDLQ != 0 || len(again.Refused) != 0 {
		t.Fatalf("a second run offered them again: %+v, %v", again, err)
	}
	var n int
	if err := testenv.Conn(t, newDSN).QueryRow(ctx, `SELECT count(*) FROM amounts`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("amounts holds %d rows (%v), want 2", n, err)
	}
}

// TestABackfillFencesTheNewTargetsApplierAndRefusesATargetThatApplied: while
// it copies, the new target is paused (an applier started meanwhile applies
// nothing, so no newer event lands before an older one), and resumed after;
// a target that has applied from the log is refused, naming the rewind.
func TestABackfillFencesTheNewTargetsApplierAndRefusesATargetThatApplied(t *testing.T) {
	cluster := testenv.Kafka(t)
	ctx := context.Background()
	if err := cluster.EnsureTopics(ctx, 1, kafkaadmin.ControlTopicSpec(), kafkaadmin.StatusTopicSpec()); err != nil {
		t.Fatal(err)
	}
	old, fresh := "old"+testenv.ID(), "new"+testenv.ID()
	oldDSN, newDSN := testenv.Database(t), testenv.Database(t)
	pool, err := targetdb.NewPool(oldDSN, targetdb.Session{ApplicationName: "sluice-test"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var recs []targetdb.Record
	for i := range 50 {
		recs = append(recs, targetdb.Decode(kafka.Message{Topic: "sluice.events", Partition: 0, Offset: int64(i),
			Value: []byte(`{"specversion":"1.0","id":"e` + time.Duration(i).String() + `","source":"s","type":"t"}`)}))
	}
	if _, err := targetdb.Apply(ctx, pool, recs, targetdb.CursorAfter("sluice.events", 0, recs[len(recs)-1].Msg), nil); err != nil {
		t.Fatal(err)
	}
	ops := New(Config{Cluster: cluster, Targets: []Target{{Name: old, DSN: oldDSN}, {Name: fresh, DSN: newDSN}}})
	defer ops.Close()
	pausedDuring := false
	res, err := ops.Backfill(ctx, fresh, old, targetdb.BackfillOptions{Chunk: 10, Progress: func(targetdb.BackfillProgress) {
		if d, err := ops.Control().Current(ctx); err == nil && d[fresh].Paused && d[fresh].By == "sluice-backfill" {
			pausedDuring = true
		}
	}})
	if err != nil || res.Copied != 50 {
		t.Fatalf("backfill: %+v, %v", res, err)
	}
	if !pausedDuring {
		t.Error("the new target was not paused while the backfill copied")
	}
	if d, err := ops.Control().Current(ctx); err != nil || d[fresh].Paused {
		t.Errorf("the new target is still paused after the backfill: %+v, %v", d[fresh], err)
	}
	_, err = ops.Backfill(ctx, fresh, old, targetdb.BackfillOptions{})
	if !errors.Is(err, ErrAlreadyApplied) || !strings.Contains(err.Error(), "rewind "+fresh+" --to-offset earliest") {
		t.Fatalf("a backfill into a target that applied from the log: %v; want ErrAlreadyApplied naming the rewind", err)
	}
}
