package client

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// request is what a test server saw of one request.
type request struct {
	header http.Header
	body   []byte // decompressed
}

// server answers each request with the next of answers (the last one
// repeats) and records what it saw.
type server struct {
	*httptest.Server
	mu   sync.Mutex
	seen []request
}

// answer is one scripted answer: a status, a Retry-After and a body; a
// status of 0 closes the connection instead.
type answer struct {
	code       int
	retryAfter string
	body       string
}

func newServer(t *testing.T, answers ...answer) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r)
		if err != nil {
			t.Errorf("reading the request: %v", err)
		}
		s.mu.Lock()
		s.seen = append(s.seen, request{header: r.Header.Clone(), body: body})
		a := answers[min(len(s.seen), len(answers))-1]
		s.mu.Unlock()
		if a.code == 0 {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.code)
		if a.body == acceptEvery {
			var events []json.RawMessage
			_ = json.Unmarshal(body, &events)
			fmt.Fprintf(w, `{"accepted":%d}`, len(events))
			return
		}
		io.WriteString(w, a.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

func readBody(r *http.Request) ([]byte, error) {
	in := r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, err
		}
		in = zr
	}
	return io.ReadAll(in)
}

// acceptEvery, as an answer's body, is ingest's: {"accepted":n} for the n
// events of the request.
const acceptEvery = "(accepted: every event sent)"

var accepted = answer{code: http.StatusAccepted, body: acceptEvery}

// newClient returns a client of srv whose waits are recorded instead of
// slept, so that a test of Retry-After takes no second.
func newClient(t *testing.T, srv *server, cfg Config) (*Client, *[]Attempt, *[]time.Duration) {
	t.Helper()
	cfg.URL, cfg.Key = srv.URL+"/v1/events", "test-key-0123456789"
	var mu sync.Mutex
	var attempts []Attempt
	cfg.OnAttempt = func(a Attempt) {
		mu.Lock()
		attempts = append(attempts, a)
		mu.Unlock()
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	c.sleep = func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	}
	return c, &attempts, &waits
}

func testEvents(n int) []Event {
	out := make([]Event, n)
	for i := range out {
		out[i] = Event{ID: fmt.Sprint(i), Source: "client/test", Type: "test.v1", Data: []byte(`{"n":1}`)}
	}
	return out
}

// ids returns the ids of the events of a batch body.
func ids(t *testing.T, body []byte) []string {
	t.Helper()
	var events []struct{ ID string }
	if err := json.Unmarshal(body, &events); err != nil {
		t.Fatalf("the body is not a JSON batch: %v: %s", err, body)
	}
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

func TestRetryAfterIsWaitedOutThen202(t *testing.T) {
	srv := newServer(t, answer{code: 429, retryAfter: "1", body: `{"errors":[{"error":"slow down"}]}`}, accepted)
	c, err := New(Config{URL: srv.URL, Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if n, err := c.Publish(context.Background(), testEvents(3)); n != 3 || err != nil {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	if elapsed := time.Since(start); elapsed < time.Second || elapsed > 3*time.Second {
		t.Fatalf("took %v; Retry-After: 1 asks for 1s, with jitter up to 1.25s", elapsed)
	}
	if got := len(srv.requests()); got != 2 {
		t.Fatalf("%d requests, want 2", got)
	}
}

func TestRetryAfterIsAFloorWithJitter(t *testing.T) {
	srv := newServer(t, answer{code: 429, retryAfter: "4"}, answer{code: 503, retryAfter: "2"}, accepted)
	c, attempts, waits := newClient(t, srv, Config{})
	if n, err := c.Publish(context.Background(), testEvents(1)); n != 1 || err != nil {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	if len(*waits) != 2 {
		t.Fatalf("waits %v, want 2", *waits)
	}
	for i, ra := range []time.Duration{4 * time.Second, 2 * time.Second} {
		if w := (*waits)[i]; w < ra || w > ra+ra/4 {
			t.Errorf("wait %d: %v, want within [%v, %v]", i, w, ra, ra+ra/4)
		}
	}
	got := *attempts
	if len(got) != 3 || got[0].StatusCode != 429 || got[0].RetryAfter != 4*time.Second || got[0].Wait != (*waits)[0] ||
		got[1].StatusCode != 503 || got[1].Number != 2 || got[2].StatusCode != 202 || got[2].Wait != 0 {
		t.Fatalf("attempts %+v", got)
	}
}

func Test503WithoutRetryAfterBacksOffExponentially(t *testing.T) {
	srv := newServer(t, answer{code: 503}, answer{code: 503}, answer{code: 503}, accepted)
	c, _, waits := newClient(t, srv, Config{MinBackoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond})
	if n, err := c.Publish(context.Background(), testEvents(2)); n != 2 || err != nil {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	bounds := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
	for i, w := range *waits {
		if w < bounds[i]/2 || w > bounds[i] {
			t.Errorf("wait %d: %v, want within [%v, %v]", i, w, bounds[i]/2, bounds[i])
		}
	}
	if len(*waits) != 3 {
		t.Fatalf("waits %v", *waits)
	}
}

func TestIDsAreAssignedOnceAndResentUnchanged(t *testing.T) {
	srv := newServer(t, answer{code: 503}, answer{code: 0}, answer{code: 429}, accepted)
	c, _, _ := newClient(t, srv, Config{})
	events := testEvents(4)
	events[1].ID, events[3].ID = "", ""
	if n, err := c.Publish(context.Background(), events); n != 4 || err != nil {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	if events[1].ID == "" || events[3].ID == "" || events[1].ID == events[3].ID {
		t.Fatalf("assigned ids %q and %q", events[1].ID, events[3].ID)
	}
	want := []string{"0", events[1].ID, "2", events[3].ID}
	reqs := srv.requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4", len(reqs))
	}
	for i, r := range reqs {
		if !bytes.Equal(r.body, reqs[0].body) {
			t.Fatalf("attempt %d sent other bytes:\n%s\n%s", i+1, r.body, reqs[0].body)
		}
		if r.header.Get("X-Request-Id") != reqs[0].header.Get("X-Request-Id") {
			t.Fatalf("attempt %d has another request id", i+1)
		}
	}
	if got := ids(t, reqs[0].body); !slices.Equal(got, want) {
		t.Fatalf("ids sent %q, want %q", got, want)
	}

	// Publishing the slice again sends the same ids: the caller's own retry
	// is as safe as the client's.
	if _, err := c.Publish(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, srv.requests()[4].body); !slices.Equal(got, want) {
		t.Fatalf("ids sent again %q, want %q", got, want)
	}
}

func TestRejectedEventsMapToTheCallersIndexes(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusForbidden} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			srv := newServer(t, accepted, answer{code: code,
				body: `{"errors":[{"index":0,"error":"invalid event: \"type\" is required"},{"index":2,"error":"bad source"},{"error":"and 5 more invalid events"}]}`})
			c, attempts, _ := newClient(t, srv, Config{MaxEvents: 3})
			n, err := c.Publish(context.Background(), testEvents(9))
			var rej *RejectedError
			if n != 3 || !errors.As(err, &rej) {
				t.Fatalf("Publish = %d, %v; want 3 and a *RejectedError", n, err)
			}
			want := []EventError{{Index: 3, Reason: `invalid event: "type" is required`}, {Index: 5, Reason: "bad source"}}
			if rej.StatusCode != code || !slices.Equal(rej.Events, want) || !slices.Equal(rej.Other, []string{"and 5 more invalid events"}) {
				t.Fatalf("%+v", rej)
			}
			if got := len(srv.requests()); got != 2 {
				t.Fatalf("%d requests: nothing after a refused request may be sent", got)
			}
			if len(*attempts) != 2 {
				t.Fatalf("a refusal was retried: %+v", *attempts)
			}
			if !strings.Contains(err.Error(), "event 3: invalid event") {
				t.Fatalf("the message does not name the event: %v", err)
			}
		})
	}
}

func TestRefusalsOfTheRequestAreDistinctAndNotRetried(t *testing.T) {
	for _, c := range []struct {
		code int
		is   error
	}{
		{http.StatusUnauthorized, ErrUnauthorized},
		{http.StatusRequestEntityTooLarge, ErrTooLarge},
		{http.StatusUnsupportedMediaType, ErrUnsupportedMediaType},
	} {
		t.Run(http.StatusText(c.code), func(t *testing.T) {
			srv := newServer(t, answer{code: c.code, body: `{"errors":[{"error":"the message"}]}`})
			cl, attempts, _ := newClient(t, srv, Config{})
			n, err := cl.Publish(context.Background(), testEvents(2))
			var se *StatusError
			if n != 0 || !errors.Is(err, c.is) || !errors.As(err, &se) || se.StatusCode != c.code || se.Message != "the message" {
				t.Fatalf("Publish = %d, %v", n, err)
			}
			for _, other := range []error{ErrUnauthorized, ErrTooLarge, ErrUnsupportedMediaType} {
				if other != c.is && errors.Is(err, other) {
					t.Fatalf("%v also matches %v", err, other)
				}
			}
			if len(*attempts) != 1 {
				t.Fatalf("%d attempts, want 1", len(*attempts))
			}
		})
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	srv := newServer(t, answer{code: 503, retryAfter: "30"})
	ctx, cancel := context.WithCancel(context.Background())
	c, err := New(Config{URL: srv.URL, Key: "k", OnAttempt: func(a Attempt) {
		if a.Wait > 0 {
			time.AfterFunc(50*time.Millisecond, cancel)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := c.Publish(ctx, testEvents(1))
	if n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("returned %v after the start, not at the cancel", elapsed)
	}
	if !strings.Contains(err.Error(), "503") {
		t.Fatalf("the error does not say what was being retried: %v", err)
	}
}

func TestCancelDuringAttemptAndWhileQueued(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c, err := New(Config{URL: srv.URL, Key: "k", MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	errs := make(chan error, 2)
	for range 2 { // one in flight, one waiting for its slot
		go func() { _, err := c.Publish(ctx, testEvents(1)); errs <- err }()
	}
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Publish did not return at the deadline")
		}
	}
}

func TestDeadlineBeforeRetryAfterReturnsTheAnswer(t *testing.T) {
	srv := newServer(t, answer{code: 503, retryAfter: "5", body: `{"errors":[{"error":"kafka is away"}]}`})
	c, _, waits := newClient(t, srv, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := c.Publish(ctx, testEvents(1))
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 503 || se.RetryAfter != 5*time.Second || len(*waits) != 0 {
		t.Fatalf("err = %v, waits %v: want the 503 at once, not a wait past the deadline", err, *waits)
	}
}

func TestAttemptsAndTotalWaitAreBounded(t *testing.T) {
	srv := newServer(t, answer{code: 503, retryAfter: "1"})
	c, attempts, _ := newClient(t, srv, Config{MaxAttempts: 3})
	_, err := c.Publish(context.Background(), testEvents(1))
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 503 || len(*attempts) != 3 || !strings.Contains(err.Error(), "3 attempts") {
		t.Fatalf("err = %v after %d attempts", err, len(*attempts))
	}

	srv = newServer(t, answer{code: 429, retryAfter: "2"})
	c, attempts, waits := newClient(t, srv, Config{MaxWait: 5 * time.Second})
	_, err = c.Publish(context.Background(), testEvents(1))
	var total time.Duration
	for _, w := range *waits {
		total += w
	}
	if !errors.As(err, &se) || se.StatusCode != 429 || total > 5*time.Second || len(*waits) != 2 {
		t.Fatalf("err = %v, waits %v: want 2 waits of 2s to 2.5s within MaxWait 5s", err, *waits)
	}
}

func TestTimeoutsAndTransportErrorsAreRetried(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then a client that hangs up cancels r's context
		switch calls.Add(1) {
		case 1:
			select { // no answer in time
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case 2:
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		default:
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"accepted":1}`)
		}
	}))
	defer srv.Close()
	var attempts []Attempt
	c, err := New(Config{URL: srv.URL, Key: "k", AttemptTimeout: 500 * time.Millisecond, MinBackoff: time.Millisecond,
		OnAttempt: func(a Attempt) { attempts = append(attempts, a) }})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.Publish(context.Background(), testEvents(1)); n != 1 || err != nil {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	if len(attempts) != 3 || !attempts[0].Timeout || attempts[0].Duration < 500*time.Millisecond ||
		attempts[1].Timeout || attempts[1].Err == nil || attempts[1].StatusCode != 0 || attempts[2].StatusCode != 202 {
		t.Fatalf("attempts %+v", attempts)
	}
}

func TestInFlightIsBounded(t *testing.T) {
	var now, peak atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		defer now.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(30 * time.Millisecond)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"accepted":1}`)
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL, Key: "k", MaxInFlight: 3, MaxEvents: 1})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.Publish(context.Background(), testEvents(3)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p != 3 {
		t.Fatalf("at most %d requests were in flight at once, want 3", p)
	}
}

func TestBatchesStayWithinTheLimitsInOrder(t *testing.T) {
	srv := newServer(t, accepted)
	c, _, _ := newClient(t, srv, Config{MaxEvents: 4, MaxBodyBytes: 400})
	events := testEvents(11)
	events[5].Data = bytes.Repeat([]byte("x"), 200) // base64: 268 bytes, in a request of its own
	if n, err := c.Publish(context.Background(), events); n != 11 || err != nil {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	var sent []string
	for _, r := range srv.requests() {
		got := ids(t, r.body)
		if len(got) > 4 || len(r.body) > 400 {
			t.Fatalf("a request of %d events and %d bytes", len(got), len(r.body))
		}
		if r.header.Get("Content-Type") != "application/cloudevents-batch+json" || r.header.Get("Authorization") != "Bearer test-key-0123456789" {
			t.Fatalf("headers %v", r.header)
		}
		sent = append(sent, got...)
	}
	if len(sent) != 11 {
		t.Fatalf("sent %q", sent)
	}
	for i, id := range sent {
		if id != fmt.Sprint(i) {
			t.Fatalf("sent %q: out of order", sent)
		}
	}
	if n := len(srv.requests()); n < 4 {
		t.Fatalf("%d requests: event 5 should have had one of its own", n)
	}
}

func TestAnEventOverTheBodyLimitIsItsError(t *testing.T) {
	srv := newServer(t, accepted)
	c, _, _ := newClient(t, srv, Config{MaxBodyBytes: 300})
	events := testEvents(5)
	events[3].Data = bytes.Repeat([]byte("x"), 300)
	done := make(chan struct{})
	var n int
	var err error
	go func() {
		defer close(done)
		n, err = c.Publish(context.Background(), events)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish hangs on an event over the limit")
	}
	if n != 3 || !errors.Is(err, ErrEventTooLarge) || !strings.Contains(err.Error(), "event 3") {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	if got := ids(t, srv.requests()[0].body); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("sent %q", got)
	}
}

func TestInvalidUTF8IsRefusedBeforeSending(t *testing.T) {
	srv := newServer(t, accepted)
	c, _, _ := newClient(t, srv, Config{})
	for _, ev := range []Event{
		{ID: "a\xff", Source: "s", Type: "t"},
		{ID: "a", Source: "s", Type: "t", Extensions: map[string]any{"ext": "\xc3"}},
		{ID: "a", Source: "s", Type: "t", Extensions: map[string]any{"id": "x"}},
		{ID: "a", Source: "s", Type: "t", Extensions: map[string]any{"obj": map[string]int{}}},
		{ID: "a", Source: "s", Type: "t", Extensions: map[string]any{"ratio": 1.5}},              // no float type in CloudEvents
		{ID: "a", Source: "s", Type: "t", Extensions: map[string]any{"big": int64(1) << 31}},     // past a 32-bit Integer
		{ID: "a", Source: "s", Type: "t", Extensions: map[string]any{"num": json.Number("1e3")}}, // not an integer literal
	} {
		if n, err := c.Publish(context.Background(), []Event{ev}); n != 0 || !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("%+v: Publish = %d, %v", ev, n, err)
		}
	}
	if n := len(srv.requests()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

func TestGzip(t *testing.T) {
	srv := newServer(t, accepted)
	c, attempts, _ := newClient(t, srv, Config{Gzip: true})
	events := testEvents(200)
	if n, err := c.Publish(context.Background(), events); n != 200 || err != nil {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	r := srv.requests()[0]
	if r.header.Get("Content-Encoding") != "gzip" || len(ids(t, r.body)) != 200 {
		t.Fatalf("Content-Encoding %q, body %.100s", r.header.Get("Content-Encoding"), r.body)
	}
	if sent := (*attempts)[0].Bytes; sent*4 > len(r.body) {
		t.Fatalf("sent %d bytes for a body of %d: not compressed", sent, len(r.body))
	}
}

func TestEncoding(t *testing.T) {
	at := time.Date(2025, 5, 9, 14, 7, 0, 123000000, time.FixedZone("", 2*3600))
	cases := []struct {
		name string
		ev   Event
		want string
	}{
		{"minimal", Event{ID: "1", Source: "s", Type: "t"}, `{"specversion":"1.0","id":"1","source":"s","type":"t"}`},
		{"every attribute", Event{ID: "1", Source: "s", Type: "t", Subject: "sub", Time: at, DataContentType: "application/json",
			DataSchema: "https://x/s", Data: []byte(`{"a": [1, 2]}`), Extensions: map[string]any{"zeta": true, "alpha": 7, "mid": "v"}},
			`{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"sub","time":"2025-05-09T14:07:00.123+02:00",` +
				`"datacontenttype":"application/json","dataschema":"https://x/s","data":{"a": [1, 2]},"alpha":7,"mid":"v","zeta":true}`},
		{"JSON data without a content type", Event{ID: "1", Source: "s", Type: "t", Data: []byte(`"text"`)},
			`{"specversion":"1.0","id":"1","source":"s","type":"t","data":"text"}`},
		{"+json", Event{ID: "1", Source: "s", Type: "t", DataContentType: "application/vnd.x+json; charset=utf-8", Data: []byte(`1`)},
			`{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"application/vnd.x+json; charset=utf-8","data":1}`},
		{"binary", Event{ID: "1", Source: "s", Type: "t", DataContentType: "application/octet-stream", Data: []byte{0, 0xff, '"'}},
			`{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"application/octet-stream","data_base64":"AP8i"}`},
		{"text is not JSON", Event{ID: "1", Source: "s", Type: "t", DataContentType: "text/plain", Data: []byte(`1`)},
			`{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"text/plain","data_base64":"MQ=="}`},
		{"JSON content type, invalid JSON", Event{ID: "1", Source: "s", Type: "t", Data: []byte(`{`)},
			`{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"ew=="}`},
		{"escapes", Event{ID: "a\"b\\c\n\x01<>&é\u2028", Source: "s", Type: "t"},
			`{"specversion":"1.0","id":"a\"b\\c\n\u0001<>&é` + "\u2028" + `","source":"s","type":"t"}`},
	}
	for _, c := range cases {
		got, err := appendEvent(nil, &c.ev)
		if err != nil || string(got) != c.want {
			t.Errorf("%s: %s, %v\nwant %s", c.name, got, err, c.want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: not valid JSON: %s", c.name, got)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 5, 9, 14, 7, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "3": 3 * time.Second, "0": 0, "-2": 0, "soon": 0,
		"Fri, 09 May 2025 14:07:10 GMT": 10 * time.Second, "Fri, 09 May 2025 14:06:10 GMT": 0,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("%q: %v, want %v", v, got, want)
		}
	}
}

func TestConfig(t *testing.T) {
	for _, cfg := range []Config{{}, {URL: "http://x"}, {URL: "x/v1/events", Key: "k"}, {URL: "http://x", Key: "k", MaxInFlight: -1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
	c, err := New(Config{URL: "https://x/v1/events", Key: "k", MinBackoff: time.Minute})
	if err != nil || c.cfg.MaxEvents != 1000 || c.cfg.MaxBodyBytes != 1<<20 || c.cfg.MaxBackoff != time.Minute {
		t.Fatalf("%+v, %v", c.cfg, err)
	}
}

// TestA2xxIsSuccessOnlyWhenItAcceptsEveryEvent: a 2xx must say
// {"accepted":n} for the n events sent; anything else is ErrNotAccepted,
// at once (not retried), and the request's events are not counted.
func TestA2xxIsSuccessOnlyWhenItAcceptsEveryEvent(t *testing.T) {
	cases := []struct {
		name      string
		answers   []answer // one per request
		maxEvents int      // per request
		events    int
		wantN     int
		wantIn    string // in the error; "" for success
	}{
		{"a 202 accepting every event is success", []answer{accepted}, 0, 3, 3, ""},
		{"a 202 accepting fewer events than sent is ErrNotAccepted", []answer{{code: 202, body: `{"accepted":2}`}}, 0, 3, 0, "2 accepted, for 3 events sent"},
		{"a 202 accepting more events than sent is ErrNotAccepted", []answer{{code: 202, body: `{"accepted":5}`}}, 0, 3, 0, "5 accepted, for 3 events sent"},
		{"a 200 that is a proxy's page is ErrNotAccepted", []answer{{code: 200, body: `<html>welcome</html>`}}, 0, 3, 0, "200 OK with no count"},
		{"a 204 without a body is ErrNotAccepted", []answer{{code: 204}}, 0, 3, 0, "204 No Content with no count"},
		{"a short count on the second request keeps the first request's events", []answer{accepted, {code: 202, body: `{"accepted":1}`}}, 2, 4, 2,
			"events 2 to 3: ingest answered 202 Accepted with 1 accepted, for 2 events sent"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newServer(t, c.answers...)
			cl, attempts, _ := newClient(t, srv, Config{MaxEvents: c.maxEvents})
			n, err := cl.Publish(context.Background(), testEvents(c.events))
			if c.wantIn == "" {
				if n != c.wantN || err != nil {
					t.Fatalf("Publish = %d, %v; want %d, nil", n, err, c.wantN)
				}
				return
			}
			if n != c.wantN || !errors.Is(err, ErrNotAccepted) || !strings.Contains(err.Error(), c.wantIn) {
				t.Fatalf("Publish = %d, %v; want %d and ErrNotAccepted saying %q", n, err, c.wantN, c.wantIn)
			}
			if len(*attempts) != len(c.answers) {
				t.Fatalf("%d attempts for %d requests: an unconfirmed 2xx was retried", len(*attempts), len(c.answers))
			}
		})
	}
}

// TestOnePublishCallSendsOneRequestAtATime: however many requests the
// client may have in flight, one call's requests go one after another, in
// order, so a subject's events are never in two requests at once.
func TestOnePublishCallSendsOneRequestAtATime(t *testing.T) {
	var now, peak atomic.Int32
	var mu sync.Mutex
	var sent []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		defer now.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		body, _ := io.ReadAll(r.Body)
		got := ids(t, body)
		mu.Lock()
		sent = append(sent, got...)
		mu.Unlock()
		time.Sleep(2 * time.Millisecond) // room for a second request to overlap, were one sent
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"accepted":%d}`, len(got))
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL, Key: "k", MaxInFlight: 8, MaxEvents: 2})
	if err != nil {
		t.Fatal(err)
	}
	events := testEvents(20)
	for i := range events {
		events[i].Subject = "customer-77"
	}
	if n, err := c.Publish(context.Background(), events); n != 20 || err != nil {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	if p := peak.Load(); p != 1 {
		t.Fatalf("%d requests of one Publish call were in flight at once", p)
	}
	for i, id := range sent {
		if id != fmt.Sprint(i) {
			t.Fatalf("sent %q: out of order", sent)
		}
	}
}
