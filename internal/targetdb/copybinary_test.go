package targetdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/testenv"
)

// ledgerRowText is a ledger row as PostgreSQL prints it, column by column,
// so that what the binary COPY wrote is compared with what the event said.
const ledgerRowText = `SELECT source, id, type, coalesce(subject, '∅'), coalesce(to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), '∅'),
	coalesce(datacontenttype, '∅'), coalesce(dataschema, '∅'), coalesce(data::text, '∅'), coalesce(encode(data_base64, 'hex'), '∅'),
	coalesce(extensions::text, '∅'), kafka_partition::text, kafka_offset::text FROM sluice_events WHERE id = $1`

// TestEveryColumnArrivesAsTheEventSaidByBothPaths writes events that fill
// every column (or leave it NULL) through ApplyNew and through Apply, and
// reads each column back as text.
func TestEveryColumnArrivesAsTheEventSaidByBothPaths(t *testing.T) {
	pool := testPool(t)
	ctx := context.Background()
	events := []struct {
		json string
		want [12]string
	}{
		{`{"specversion":"1.0","id":"full","source":"src/ü","type":"t.v1","subject":"s 1","time":"2025-05-09T14:24:00.123456789+02:00",
			"datacontenttype":"application/json","dataschema":"https://example.com/s","data":{"b":[1,2.5,"x\"y"],"a":null},"traceparent":"00-x","zext":7}`,
			[12]string{"src/ü", "full", "t.v1", "s 1", "2025-05-09 12:24:00.123456", "application/json", "https://example.com/s",
				`{"a": null, "b": [1, 2.5, "x\"y"]}`, "∅", `{"zext": 7, "traceparent": "00-x"}`, "3", "%d"}},
		{`{"specversion":"1.0","id":"bare","source":"s","type":"t"}`,
			[12]string{"s", "bare", "t", "∅", "∅", "∅", "∅", "∅", "∅", "∅", "3", "%d"}},
		{`{"specversion":"1.0","id":"bin","source":"s","type":"t","data_base64":"AAH/"}`,
			[12]string{"s", "bin", "t", "∅", "∅", "∅", "∅", "∅", "0001ff", "∅", "3", "%d"}},
		{`{"specversion":"1.0","id":"scalar","source":"s","type":"t","data":"just a string","time":"1969-07-20T20:17:40Z"}`,
			[12]string{"s", "scalar", "t", "∅", "1969-07-20 20:17:40.000000", "∅", "∅", `"just a string"`, "∅", "∅", "3", "%d"}},
	}
	// A topic whose name needs quoting proves the offsets statement's
	// literal; Kafka allows no quote, but the statement must not care.
	topic := `ev'ents\`
	for round, path := range []string{"ApplyNew", "Apply"} {
		recs := make([]Record, len(events))
		for i, e := range events {
			value := []byte(e.json)
			if round == 1 { // the same events under other ids: both paths write
				var m map[string]any
				if err := json.Unmarshal(value, &m); err != nil {
					t.Fatal(err)
				}
				m["id"] = m["id"].(string) + "-2"
				value, _ = json.Marshal(m)
			}
			recs[i] = Decode(kafka.Message{Topic: topic, Partition: 3, Offset: int64(round*len(events) + i), Value: value,
				Time: time.UnixMilli(1746800640123 + int64(i))})
		}
		cur := CursorAfter(topic, int64(round*len(events)), recs[len(recs)-1].Msg)
		if path == "ApplyNew" {
			if err := ApplyNew(ctx, pool, recs, cur); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		} else if n, err := Apply(ctx, pool, recs, cur, nil); err != nil || n != int64(len(recs)) {
			t.Fatalf("%s: %d new, %v", path, n, err)
		}
		for i, e := range events {
			id := recs[i].Event.ID
			var got [12]string
			dst := make([]any, len(got))
			for j := range got {
				dst[j] = &got[j]
			}
			if err := pool.QueryRow(ctx, ledgerRowText, id).Scan(dst...); err != nil {
				t.Fatalf("%s %s: %v", path, id, err)
			}
			want := e.want
			want[1] = id
			want[11] = fmt.Sprint(recs[i].Msg.Offset)
			if got != want {
				t.Errorf("%s wrote %s as\n%q\nwant\n%q", path, id, got, want)
			}
		}
		off, err := LoadOffset(ctx, pool, topic, 3)
		if err != nil || off.Next != cur.Next || !off.LastTime.Equal(cur.LastTime) {
			t.Fatalf("%s: offsets row %+v (%v); want next %d, last record time %v", path, off, err, cur.Next, cur.LastTime)
		}
	}
}

// TestAFailedApplyNewLeavesItsSessionClean: a batch the server refuses —
// a duplicate, an event PostgreSQL cannot store, a stale cursor — writes
// nothing, and the session goes back to the pool outside any transaction,
// ready for the next batch.
func TestAFailedApplyNewLeavesItsSessionClean(t *testing.T) {
	dsn := testenv.Database(t)
	testenv.RefusePoison(t, dsn)
	pool, err := NewPool(dsn, Session{ApplicationName: "sluice-test"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx := context.Background()
	rec := func(off int64, value string) Record {
		return Decode(kafka.Message{Topic: "events", Partition: 0, Offset: off, Value: []byte(value)})
	}
	ev := func(id string) string { return string(testenv.Event("s", id)) }
	if err := ApplyNew(ctx, pool, []Record{rec(0, ev("a"))}, Cursor{Topic: "events", Next: 1}); err != nil {
		t.Fatal(err)
	}
	sessions := pool.Stat().NewConnsCount()
	for _, c := range []struct {
		name  string
		recs  []Record
		cur   Cursor
		check func(error) bool
	}{
		{"duplicate", []Record{rec(1, ev("b")), rec(2, ev("a"))}, Cursor{Topic: "events", From: 1, Next: 3},
			func(err error) bool { return errors.Is(err, ErrNotAllNew) }},
		{"an event the table's CHECK refuses", []Record{rec(1, ev("c")), rec(2, string(testenv.Poison("s", "d")))},
			Cursor{Topic: "events", From: 1, Next: 3},
			func(err error) bool { var pg *pgconn.PgError; return errors.As(err, &pg) && Classify(err) == Permanent }},
		{"stale cursor", []Record{rec(1, ev("f"))}, Cursor{Topic: "events", From: 0, Next: 2},
			func(err error) bool { return errors.Is(err, ErrOffsetsMoved) }},
	} {
		for i := range 3 { // the same session, again and again
			err := ApplyNew(ctx, pool, c.recs, c.cur)
			if err == nil || !c.check(err) {
				t.Fatalf("%s (try %d): %v", c.name, i, err)
			}
		}
		var rows int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM sluice_events`).Scan(&rows); err != nil || rows != 1 {
			t.Fatalf("%s: the ledger holds %d rows (%v), want 1", c.name, rows, err)
		}
		if off, _ := LoadOffset(ctx, pool, "events", 0); off.Next != 1 {
			t.Fatalf("%s: offsets moved to %d", c.name, off.Next)
		}
		for _, conn := range pool.AcquireAllIdle(ctx) {
			if st := conn.Conn().PgConn().TxStatus(); st != 'I' {
				t.Errorf("%s: a pooled session is in transaction state %q", c.name, st)
			}
			conn.Release()
		}
	}
	if err := ApplyNew(ctx, pool, []Record{rec(1, ev("g"))}, Cursor{Topic: "events", From: 1, Next: 2}); err != nil {
		t.Fatalf("the next good batch: %v", err)
	}
	// A refused batch is rolled back on its session, which is kept: the
	// pool would close a session left inside a failed transaction.
	if opened := pool.Stat().NewConnsCount() - sessions; opened != 0 {
		t.Errorf("%d sessions were opened again after refused batches, want 0", opened)
	}
}
