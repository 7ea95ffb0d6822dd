package operations

import (
	"context"
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
