package producer

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
)

const testKey = "test-key-0123456789abcdef"

// recordingAppender stands in for Kafka in unit tests: it keeps what it was
// asked to append, or fails as told.
type recordingAppender struct {
	mu   sync.Mutex
	msgs []kafka.Message
	err  error
}

func (r *recordingAppender) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.msgs = append(r.msgs, msgs...)
	return nil
}

func newTestHandler(t *testing.T, out Appender, cfg Config) (*Handler, *prometheus.Registry) {
	t.Helper()
	if cfg.Keys == nil {
		cfg.Keys = Secrets(testKey)
	}
	reg := prometheus.NewRegistry()
	h, err := NewHandler(cfg, out, NewMetrics(reg), nil)
	if err != nil {
		t.Fatal(err)
	}
	return h, reg
}

func post(h http.Handler, contentType, auth, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

const (
	ev1 = `{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"customer-9"}`
	ev2 = `{"specversion":"1.0","id":"2","source":"s","type":"t"}`
)

func TestHandlerAnswers(t *testing.T) {
	bearer := "Bearer " + testKey
	cases := []struct {
		name        string
		contentType string
		auth        string
		body        string
		want        int
		wantAppends int
		wantInBody  string
	}{
		{"one structured event is accepted", "application/cloudevents+json", bearer, ev1, 202, 1, `"accepted":1`},
		{"a batch is accepted whole", "application/cloudevents-batch+json", bearer, "[" + ev1 + "," + ev2 + "]", 202, 2, `"accepted":2`},
		{"application/json takes a batch", "application/json", bearer, "[" + ev1 + "," + ev2 + "]", 202, 2, `"accepted":2`},
		{"the scheme of the header is case-insensitive", "application/json", "bearer " + testKey, ev1, 202, 1, ""},
		{"a missing key is refused", "application/json", "", ev1, 401, 0, "API key"},
		{"a wrong key is refused", "application/json", "Bearer wrong-key-0123456789abcdef", ev1, 401, 0, "API key"},
		{"basic auth is not a bearer key", "application/json", "Basic " + testKey, ev1, 401, 0, ""},
		{"a wrong media type is refused", "text/plain", bearer, ev1, 415, 0, "unsupported media type"},
		{"a missing media type is refused", "", bearer, ev1, 415, 0, "unsupported media type"},
		{"malformed JSON is refused", "application/json", bearer, `{"specversion":`, 400, 0, "not valid JSON"},
		{"a missing id is refused", "application/json", bearer, `{"specversion":"1.0","source":"s","type":"t"}`, 400, 0, `"index":0`},
		{"a wrong specversion is refused", "application/json", bearer, `{"specversion":"0.3","id":"1","source":"s","type":"t"}`, 400, 0, "0.3"},
		{"one bad event refuses the whole batch", "application/json", bearer, "[" + ev1 + `,{"id":"x"}` + "]", 400, 0, `"index":1`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := &recordingAppender{}
			h, _ := newTestHandler(t, out, Config{})
			rec := post(h, c.contentType, c.auth, c.body)
			if rec.Code != c.want {
				t.Fatalf("status %d, want %d; body %s", rec.Code, c.want, rec.Body)
			}
			if len(out.msgs) != c.wantAppends {
				t.Fatalf("appended %d records, want %d", len(out.msgs), c.wantAppends)
			}
			if !strings.Contains(rec.Body.String(), c.wantInBody) {
				t.Fatalf("body %s does not contain %s", rec.Body, c.wantInBody)
			}
			if c.want != 202 && !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("error body is not JSON: %s", rec.Body)
			}
		})
	}
}

func TestHandlerKeysRecordsBySubjectElseSource(t *testing.T) {
	out := &recordingAppender{}
	h, _ := newTestHandler(t, out, Config{})
	if rec := post(h, "application/json", "Bearer "+testKey, "["+ev1+","+ev2+"]"); rec.Code != 202 {
		t.Fatalf("status %d", rec.Code)
	}
	if string(out.msgs[0].Key) != "customer-9" || string(out.msgs[1].Key) != "s" {
		t.Fatalf("keys %q, %q", out.msgs[0].Key, out.msgs[1].Key)
	}
	if string(out.msgs[0].Value) != ev1 {
		t.Fatalf("the record value must be the event as sent, got %s", out.msgs[0].Value)
	}
}

func TestHandlerLimits(t *testing.T) {
	bearer := "Bearer " + testKey
	t.Run("a body over the byte limit gets 413 and appends nothing", func(t *testing.T) {
		out := &recordingAppender{}
		h, _ := newTestHandler(t, out, Config{MaxBodyBytes: 100})
		big := `{"specversion":"1.0","id":"1","source":"s","type":"t","data":"` + strings.Repeat("x", 200) + `"}`
		if rec := post(h, "application/json", bearer, big); rec.Code != 413 || len(out.msgs) != 0 {
			t.Fatalf("status %d, appended %d", rec.Code, len(out.msgs))
		}
	})
	t.Run("a batch over the event limit gets 413 and appends nothing", func(t *testing.T) {
		out := &recordingAppender{}
		h, _ := newTestHandler(t, out, Config{MaxEvents: 1})
		if rec := post(h, "application/json", bearer, "["+ev1+","+ev2+"]"); rec.Code != 413 || len(out.msgs) != 0 {
			t.Fatalf("status %d, appended %d", rec.Code, len(out.msgs))
		}
	})
}

func TestHandlerAnswers503WhenKafkaCannotTakeTheWrite(t *testing.T) {
	out := &recordingAppender{err: errors.New("kafka: not enough replicas")}
	h, reg := newTestHandler(t, out, Config{})
	rec := post(h, "application/json", "Bearer "+testKey, ev1)
	if rec.Code != 503 {
		t.Fatalf("status %d, want 503", rec.Code)
	}
	if rec.Header().Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	name := h.KeyNames()[0]
	if got := testutil.ToFloat64(h.metrics.requests.WithLabelValues("503", name)); got != 1 {
		t.Fatalf("sluice_ingest_requests_total{code=503,key=%s} = %v", name, got)
	}
	if n, _ := testutil.GatherAndCount(reg, "sluice_ingest_events_total"); n != 1 {
		t.Fatalf("sluice_ingest_events_total not exported for the one key before any event")
	}
	if got := testutil.ToFloat64(h.metrics.events); got != 0 {
		t.Fatalf("events counted for a failed write: %v", got)
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no keys", Config{}, "ingest.keys"},
		{"a short key", Config{Keys: Secrets("short")}, "ingest.keys[0]"},
		{"a negative limit", Config{Keys: Secrets(testKey), MaxEvents: -1}, "must not be negative"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalidConfig naming %s", c.name, err, c.want)
		}
	}
}

// TestKeyringComparesWholeKeys checks keyring.match, which the handler calls
// on every request, and the handler's answer for the same headers: only a
// whole key matches, and the key returned (whose name is the identity of its
// rate bucket) is the key matched.
func TestKeyringComparesWholeKeys(t *testing.T) {
	const second = "second-key-0123456789abcdef"
	k, err := newKeyring(Secrets(testKey, second))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := newTestHandler(t, &recordingAppender{}, Config{Keys: Secrets(testKey, second)})
	for header, want := range map[string]string{ // the key it carries, "" for none
		"Bearer " + testKey:                  testKey,
		"Bearer " + second:                   second,
		"Bearer " + testKey[:len(testKey)-1]: "",
		"Bearer " + testKey + "x":            "",
		"Bearer ":                            "",
		testKey:                              "",
		"Bearer  " + testKey + "  ":          testKey,
	} {
		key, ok := k.match(header)
		if ok != (want != "") {
			t.Errorf("match(%q) matched = %v, want %v", header, ok, want != "")
		}
		if ok && want != "" && key.digest != sha256.Sum256([]byte(want)) {
			t.Errorf("match(%q) returned the digest of another key than %q", header, want)
		}
		wantCode := http.StatusUnauthorized
		if want != "" {
			wantCode = http.StatusAccepted
		}
		if rec := post(h, "application/json", header, ev1); rec.Code != wantCode {
			t.Errorf("a request with Authorization %q: status %d, want %d", header, rec.Code, wantCode)
		}
	}
}

func TestRateLimitPerKey(t *testing.T) {
	out := &recordingAppender{}
	const other = "other-key-0123456789abcdef"
	h, _ := newTestHandler(t, out, Config{Keys: Secrets(testKey, other), RatePerKey: 100, MaxEvents: 500})
	clock := time.Unix(1_700_000_000, 0)
	h.now = func() time.Time { return clock }
	batch := func(n int) string {
		var b strings.Builder
		b.WriteByte('[')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"specversion":"1.0","id":"%d","source":"s","type":"t"}`, i)
		}
		return b.String() + "]"
	}
	send := func(key string, n int) *httptest.ResponseRecorder {
		return post(h, "application/json", "Bearer "+key, batch(n))
	}
	if rec := send(testKey, 500); rec.Code != 202 {
		t.Fatalf("the burst (500 events) was refused: %d %s", rec.Code, rec.Body)
	}
	rec := send(testKey, 10)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("over the limit: %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	if len(out.msgs) != 500 {
		t.Fatalf("a refused request appended records: %d in all", len(out.msgs))
	}
	if rec := send(other, 10); rec.Code != 202 {
		t.Fatalf("another key was limited by the first one's traffic: %d", rec.Code)
	}
	clock = clock.Add(time.Second) // 100 more events' worth
	if rec := send(testKey, 100); rec.Code != 202 {
		t.Fatalf("after a second the bucket holds 100 events again, but: %d %s", rec.Code, rec.Body)
	}
	if rec := send(testKey, 1); rec.Code != 429 {
		t.Fatalf("the bucket should be empty again: %d", rec.Code)
	}
}

func TestNoRateLimitByDefault(t *testing.T) {
	h, _ := newTestHandler(t, &recordingAppender{}, Config{MaxEvents: 10})
	for i := range 200 {
		if rec := post(h, "application/json", "Bearer "+testKey, ev1); rec.Code != 202 {
			t.Fatalf("request %d: %d", i, rec.Code)
		}
	}
}
