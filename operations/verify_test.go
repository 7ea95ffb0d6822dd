package operations

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
	"github.com/sluicehq/sluice/internal/testenv"
)

func applyEvents(t *testing.T, dsn string, events [][]byte) {
	t.Helper()
	pool, err := targetdb.NewPool(dsn, targetdb.Session{ApplicationName: "sluice-test"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	recs := make([]targetdb.Record, len(events))
	for i, e := range events {
		recs[i] = targetdb.Decode(kafka.Message{Topic: "events", Offset: int64(i), Value: e})
	}
	if _, err := targetdb.Apply(context.Background(), pool, recs, targetdb.CursorAfter("events", 0, recs[len(recs)-1].Msg), nil); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyComparesWholeEventsOverAllTime(t *testing.T) {
	dsnA, dsnB := testenv.Database(t), testenv.Database(t)
	var events [][]byte
	for i, when := range []string{"1950-01-01T00:00:00Z", "2025-05-09T14:07:00Z", "2025-05-09T14:07:30Z", "9999-06-01T00:00:00Z", ""} {
		timeAttr := ""
		if when != "" {
			timeAttr = fmt.Sprintf(`,"time":%q`, when)
		}
		events = append(events, fmt.Appendf(nil, `{"specversion":"1.0","id":"e%d","source":"s","type":"t"%s,"data":{"n":%d}}`, i, timeAttr, i))
	}
	applyEvents(t, dsnA, events)
	applyEvents(t, dsnB, events)
	ops := New(Config{Cluster: kafkaadmin.New(kafkaadmin.Config{Brokers: []string{"127.0.0.1:1"}}),
		Targets: []Target{{Name: "a", DSN: dsnA}, {Name: "b", DSN: dsnB}}})
	defer ops.Close()
	ctx := context.Background()
	res, err := ops.Verify(ctx, VerifyRequest{A: "a", B: "b", Keys: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Differing) != 0 || res.Events != 5 || len(res.Buckets) != 4 {
		t.Fatalf("identical targets: %d events in %d buckets, differing %+v", res.Events, len(res.Buckets), res.Differing)
	}

	b := testenv.Conn(t, dsnB)
	a := testenv.Conn(t, dsnA)
	// Same keys, other content: a key-only checksum would call these equal.
	if _, err := b.Exec(ctx, `UPDATE sluice_events SET data = '{"n":99}' WHERE id = 'e1'`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(ctx, `UPDATE sluice_events SET type = 'other' WHERE id = 'e3'`); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, `DELETE FROM sluice_events WHERE id = 'e4'`); err != nil {
		t.Fatal(err)
	}
	res, err = ops.Verify(ctx, VerifyRequest{A: "a", B: "b", Keys: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Differing) != 3 || res.FirstDiff == nil {
		t.Fatalf("differing buckets %+v, want 3 (2025-05-09 14:07, 9999, no time)", res.Differing)
	}
	want := map[string]string{"e1": "content differs", "e3": "content differs", "e4": "only in B"}
	if len(res.Keys) != len(want) {
		t.Fatalf("differing keys %+v, want %v", res.Keys, want)
	}
	for _, k := range res.Keys {
		if want[k.ID] != k.Diff {
			t.Errorf("key %s: %q, want %q", k.ID, k.Diff, want[k.ID])
		}
	}
	windowed, err := ops.Verify(ctx, VerifyRequest{A: "a", B: "b", From: time.Date(2025, 5, 9, 14, 7, 20, 0, time.UTC), To: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if len(windowed.Differing) != 0 || windowed.Events != 1 {
		t.Fatalf("window holding only e2: %d events, differing %+v", windowed.Events, windowed.Differing)
	}
}
