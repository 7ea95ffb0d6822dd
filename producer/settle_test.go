package producer

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// stallingAppender holds its first write until released, as a frozen
// broker does; every write is recorded once it completes, in order.
type stallingAppender struct {
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	ids     []string
}

func (s *stallingAppender) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	first := false
	s.once.Do(func() { first = true })
	if first {
		<-s.release // kafka-go keeps a timed-out write queued: it ignores ctx here too
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		id := string(m.Value)
		id = id[strings.Index(id, `"id":"`)+6:]
		s.ids = append(s.ids, id[:strings.IndexByte(id, '"')])
	}
	return nil
}

func (s *stallingAppender) appended() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.ids, ",")
}

// TestAWriteAnsweredBeforeKafkaSettledItNeverLandsAfterALaterOne replays
// the frozen broker: v2 of a subject is answered 503 (outcome unknown)
// while kafka-go still holds it; the client goes on to v3. v3 must wait for
// v2 to settle (here: be refused, nothing of it appended) so that v2 can
// never be appended after v3; another subject is not held up; and v2's
// request keeps its slot until Kafka settles it, so memory stays bounded.
func TestAWriteAnsweredBeforeKafkaSettledItNeverLandsAfterALaterOne(t *testing.T) {
	out := &stallingAppender{release: make(chan struct{})}
	h, _ := newTestHandler(t, out, Config{WriteTimeout: 150 * time.Millisecond, MaxInFlight: 8, MaxInFlightPerKey: 8})
	srv := httptest.NewServer(h)
	defer srv.Close()
	post := func(id, subject string) (int, string) {
		body := `{"specversion":"1.0","id":"` + id + `","source":"s","type":"t","subject":"` + subject + `"}`
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/cloudevents+json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("v2", "customer-1"); code != http.StatusServiceUnavailable || !strings.Contains(body, "may be stored") {
		t.Fatalf("v2 while Kafka holds it: %d %s; want 503, outcome unknown", code, body)
	}
	if n := h.inFlight.inUseNow(); n != 1 {
		t.Errorf("%d slots in use after v2 was answered; its write is not settled, so it must keep its slot", n)
	}
	if code, body := post("v3", "customer-1"); code != http.StatusServiceUnavailable || !strings.Contains(body, "nothing of this request was appended") {
		t.Fatalf("v3 of the same subject while v2 is unsettled: %d %s; want 503, nothing appended", code, body)
	}
	if code, _ := post("w1", "customer-2"); code != http.StatusAccepted {
		t.Fatalf("another subject: %d, want 202", code)
	}
	close(out.release) // the broker thaws: v2 is appended after all
	deadline := time.Now().Add(5 * time.Second)
	for h.inFlight.inUseNow() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("v2's slot was never given back after its write settled")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, _ := post("v3", "customer-1"); code != http.StatusAccepted {
		t.Fatalf("v3 once v2 settled: %d, want 202", code)
	}
	if got := out.appended(); got != "w1,v2,v3" {
		t.Fatalf("appended %s; want w1, then v2, then v3: never v2 after v3", got)
	}
}

// inUseNow is how many slots are taken.
func (s *slots) inUseNow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inUse
}
