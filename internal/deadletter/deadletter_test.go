package deadletter

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"
)

func TestARecordSurvivesTheDLQRoundTrip(t *testing.T) {
	orig := kafka.Message{Topic: "sluice.events", Partition: 3, Offset: 41, Key: []byte("k"),
		Value:   []byte(`{"specversion":"1.0","id":"e1","source":"s","type":"t"}`),
		Headers: []kafka.Header{{Key: "traceparent", Value: []byte("00-abc")}}}
	at := time.Date(2025, 5, 9, 14, 7, 0, 0, time.UTC)
	first := Wrap(orig, errors.New("bad value"), "permanent", "b", at)
	first.Offset = 7
	l := Parse(first)
	if l.Source != "s" || l.ID != "e1" || l.Error != "bad value" || l.OriginalPartition != 3 ||
		l.OriginalOffset != 41 || l.OriginalTopic != "sluice.events" || l.DLQOffset != 7 || l.FailedAt != at.Format(time.RFC3339Nano) {
		t.Fatalf("parsed %+v", l)
	}
	back := l.Original()
	if back.Topic != orig.Topic || back.Partition != 3 || back.Offset != 41 || len(back.Headers) != 1 || back.Headers[0].Key != "traceparent" {
		t.Fatalf("original %+v, want the record as published", back)
	}

	// Failing again on replay: one set of sluice headers, the new error.
	again := Wrap(first, errors.New("still bad"), "permanent", "b", at.Add(time.Hour))
	count := map[string]int{}
	for _, h := range again.Headers {
		count[h.Key]++
	}
	for _, k := range []string{HeaderError, HeaderOffset, HeaderPartition, HeaderTopic, "traceparent"} {
		if count[k] != 1 {
			t.Errorf("header %s appears %d times after a second dead-lettering, want once", k, count[k])
		}
	}
	if l2 := Parse(again); l2.Error != "still bad" || l2.OriginalOffset != 41 || l2.OriginalPartition != 3 {
		t.Errorf("second dead letter parsed as %+v", l2)
	}
}

func TestADeadLetterAlwaysFits(t *testing.T) {
	huge := kafka.Message{Topic: "sluice.events", Partition: 1, Offset: 9, Value: make([]byte, 3<<20)}
	cause := errors.New(strings.Repeat("détail ", 10_000)) // a database error quoting the value
	m := Fit(Wrap(huge, cause, "permanent", "b", time.Now()), 2<<20)
	if m.Value != nil {
		t.Fatalf("a 3 MiB value kept in a 2 MiB dead letter")
	}
	l := Parse(m)
	if !strings.HasPrefix(l.Omitted, "3145728 bytes, sha256 ") || l.OriginalOffset != 9 {
		t.Fatalf("omitted %q, offset %d", l.Omitted, l.OriginalOffset)
	}
	if len(l.Error) > MaxErrorBytes || !utf8.ValidString(l.Error) || !strings.HasSuffix(l.Error, "…") {
		t.Fatalf("error header of %d bytes (valid UTF-8 %v), want at most %d, cut visibly", len(l.Error), utf8.ValidString(l.Error), MaxErrorBytes)
	}
	small := Wrap(kafka.Message{Value: []byte(`{}`)}, errors.New("x"), "permanent", "b", time.Now())
	if got := Fit(small, 2<<20); string(got.Value) != `{}` {
		t.Fatal("a small dead letter lost its value")
	}
}
