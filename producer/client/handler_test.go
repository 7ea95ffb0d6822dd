package client_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/producer"
	"github.com/sluicehq/sluice/producer/client"
	"github.com/sluicehq/sluice/schema"
)

// recorder is an appender that keeps what it was given.
type recorder struct {
	mu   sync.Mutex
	msgs []kafka.Message
}

func (r *recorder) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msgs...)
	return nil
}

// handlerClient returns a client of the real ingest handler (in process,
// with keys as given), and what the handler appended.
func handlerClient(t *testing.T, keys []producer.Key, cfg client.Config) (*client.Client, *recorder) {
	t.Helper()
	rec := &recorder{}
	h, err := producer.NewHandler(producer.Config{Keys: keys, MaxEvents: 50}, rec, producer.NewMetrics(prometheus.NewRegistry()), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cfg.URL = srv.URL + "/v1/events"
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

// The handler is the judge of the encoding: every kind of data and
// attribute arrives as given, gzipped or not.
func TestTheIngestHandlerTakesWhatTheClientSends(t *testing.T) {
	for _, gz := range []bool{false, true} {
		c, rec := handlerClient(t, producer.Secrets("handler-key-0123456789"), client.Config{Key: "handler-key-0123456789", Gzip: gz, MaxEvents: 50})
		binary := []byte{0, 1, 2, 0xfe, 0xff, '"', '\\', '\n'}
		at := time.Date(2025, 5, 9, 14, 7, 0, 500, time.UTC)
		events := []client.Event{
			{ID: "json", Source: "//test", Type: "t.v1", Subject: "s-1", Time: at, Data: []byte(`{"a":[1,"\u00e9"]}`),
				Extensions: map[string]any{"traceid": "abc", "seq": 42, "replay": false}},
			{ID: "binary", Source: "//test", Type: "t.v1", DataContentType: "application/octet-stream", Data: binary},
			{ID: "text \"quoted\" é 😀", Source: "//test", Type: "t.v1", DataContentType: "text/plain", Data: []byte("line\x00with NUL")},
			{Source: "//test", Type: "t.v1"},
		}
		for i := 0; i < 120; i++ { // three requests of at most 50
			events = append(events, client.Event{Source: "//test/bulk", Type: "t.v1", Data: []byte(`{"i":1}`)})
		}
		if n, err := c.Publish(context.Background(), events); n != len(events) || err != nil {
			t.Fatalf("gzip %v: Publish = %d, %v", gz, n, err)
		}
		if len(rec.msgs) != len(events) {
			t.Fatalf("appended %d, want %d", len(rec.msgs), len(events))
		}
		for i, m := range rec.msgs {
			ev, err := schema.DecodeEvent(m.Value)
			if err != nil {
				t.Fatal(err)
			}
			want := events[i]
			if ev.ID != want.ID || ev.Source != want.Source || ev.Subject != want.Subject || !ev.Time.Equal(want.Time) {
				t.Fatalf("event %d arrived as %+v, want %+v", i, ev, want)
			}
			switch i {
			case 0:
				if string(ev.Data) != string(want.Data) || string(ev.Extensions["seq"]) != "42" || string(ev.Extensions["traceid"]) != `"abc"` {
					t.Fatalf("event 0 arrived as %s", m.Value)
				}
			case 1, 2:
				if !bytes.Equal(ev.DataBase64, want.Data) || ev.Data != nil {
					t.Fatalf("event %d arrived as %s", i, m.Value)
				}
			}
		}
	}
}

func TestTheIngestHandlersRefusalsMapBack(t *testing.T) {
	keys := []producer.Key{{Name: "billing", Secret: "billing-key-0123456789", Sources: []string{"//billing/"}}}
	c, rec := handlerClient(t, keys, client.Config{Key: "billing-key-0123456789", MaxEvents: 2})
	events := []client.Event{
		{ID: "1", Source: "//billing/eu", Type: "paid"},
		{ID: "2", Source: "//billing/eu", Type: "paid"},
		{ID: "3", Source: "//billing/eu", Type: "paid"},
		{ID: "4", Source: "//shop/eu", Type: "paid"},
		{ID: "5", Source: "//billing/eu", Type: "paid"},
	}
	n, err := c.Publish(context.Background(), events)
	var rej *client.RejectedError
	if n != 2 || !errors.As(err, &rej) || rej.StatusCode != http.StatusForbidden || len(rej.Events) != 1 || rej.Events[0].Index != 3 ||
		!strings.Contains(rej.Events[0].Reason, `"//shop/eu"`) {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	if len(rec.msgs) != 2 {
		t.Fatalf("appended %d: the refused request or one after it was appended", len(rec.msgs))
	}

	events[3].Source, events[4].Type = "//billing/us", ""
	n, err = c.Publish(context.Background(), events[2:]) // requests [3 4], then [5]
	if n != 2 || !errors.As(err, &rej) || rej.StatusCode != http.StatusBadRequest || rej.Events[0].Index != 2 {
		t.Fatalf("Publish = %d, %v", n, err)
	}

	wrong, _ := handlerClient(t, keys, client.Config{Key: "not-the-key-0123456789"})
	if _, err := wrong.Publish(context.Background(), events[:1]); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("a wrong key: %v", err)
	}
	big, _ := handlerClient(t, keys, client.Config{Key: "billing-key-0123456789", MaxEvents: 51})
	many := make([]client.Event, 51)
	for i := range many {
		many[i] = client.Event{Source: "//billing/eu", Type: "paid"}
	}
	if _, err := big.Publish(context.Background(), many); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("more events than the server takes: %v", err)
	}
}
