package producer

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func gzipped(s string) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	_ = zw.Close()
	return b.String()
}

func send(h http.Handler, headers map[string]string, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testKey)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHostileAndCarelessRequests(t *testing.T) {
	structured := map[string]string{"Content-Type": "application/cloudevents+json"}
	batch := map[string]string{"Content-Type": "application/cloudevents-batch+json"}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for a, b := range m {
			out[a] = b
		}
		return out
	}
	bad := func(i int) string { return `{"specversion":"1.0","id":"` + strconv.Itoa(i) + `"}` }
	var manyBad []string
	for i := range 500 {
		manyBad = append(manyBad, bad(i))
	}
	cases := []struct {
		name        string
		headers     map[string]string
		body        string
		want        int
		wantAppends int
		wantInBody  string
	}{
		{"a gzip body is accepted", with(structured, "Content-Encoding", "gzip"), gzipped(ev1), 202, 1, `"accepted":1`},
		{"a plain body labelled gzip is refused", with(structured, "Content-Encoding", "gzip"), ev1, 400, 0, "not gzip"},
		{"a coding other than gzip is 415", with(structured, "Content-Encoding", "br"), ev1, 415, 0, "br"},
		{"a gzip bomb over the limit is 413", with(structured, "Content-Encoding", "gzip"),
			gzipped(`{"specversion":"1.0","id":"1","source":"s","type":"t","data":"` + strings.Repeat("x", 2<<20) + `"}`), 413, 0, "limit"},
		{"the charset is case-insensitive", map[string]string{"Content-Type": "application/cloudevents+json; charset=Utf-8"}, ev1, 202, 1, ""},
		{"an empty batch is accepted and appends nothing", batch, `[]`, 202, 0, `"accepted":0`},
		{"a million empty objects is 413, not a million errors", batch, "[" + strings.Repeat("{},", 340_000) + "{}]", 413, 0, "limit of 1000 events"},
		{"the per-event errors are capped", batch, "[" + strings.Join(manyBad, ",") + "]", 400, 0, "and 400 more invalid events"},
		{"an id of invalid UTF-8 is refused", structured, "{\"specversion\":\"1.0\",\"id\":\"\xff\",\"source\":\"s\",\"type\":\"t\"}", 400, 0, "not valid UTF-8"},
		{"a lone surrogate is refused", structured, `{"specversion":"1.0","id":"\ud800","source":"s","type":"t"}`, 400, 0, "surrogate"},
		{"a NUL in data is refused", structured, `{"specversion":"1.0","id":"1","source":"s","type":"t","data":"\u0000"}`, 400, 0, `\\u0000`},
		{"binary mode: JSON data", map[string]string{"Content-Type": "application/json", "Ce-Specversion": "1.0", "Ce-Id": "b1",
			"Ce-Source": "/sensors/7", "Ce-Type": "reading", "Ce-Subject": "sensor-7", "Ce-Traceparent": "00-abc"}, `{"celsius":21.5}`, 202, 1, `"accepted":1`},
		{"binary mode: any media type", map[string]string{"Content-Type": "image/png", "Ce-Specversion": "1.0", "Ce-Id": "b2",
			"Ce-Source": "s", "Ce-Type": "photo"}, "\x89PNG\r\n", 202, 1, ""},
		{"binary mode: percent-encoded values", map[string]string{"Content-Type": "text/plain", "Ce-Specversion": "1.0", "Ce-Id": "b3",
			"Ce-Source": "caf%C3%A9", "Ce-Type": "t"}, "hi", 202, 1, ""},
		{"binary mode: a missing id is refused", map[string]string{"Content-Type": "text/plain", "Ce-Specversion": "1.0",
			"Ce-Source": "s", "Ce-Type": "t"}, "hi", 400, 0, `\"id\" is required`},
		{"binary mode: JSON data that is not JSON is refused", map[string]string{"Content-Type": "application/json", "Ce-Specversion": "1.0",
			"Ce-Id": "b4", "Ce-Source": "s", "Ce-Type": "t"}, "{not json", 400, 0, "not valid JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := &recordingAppender{}
			h, _ := newTestHandler(t, out, Config{})
			rec := send(h, c.headers, c.body)
			if rec.Code != c.want || len(out.msgs) != c.wantAppends || !strings.Contains(rec.Body.String(), c.wantInBody) {
				t.Fatalf("status %d, appended %d, body %.300s; want %d, %d, containing %q", rec.Code, len(out.msgs), rec.Body, c.want, c.wantAppends, c.wantInBody)
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("the answer is not JSON: %s", rec.Body)
			}
			if rec.Body.Len() > 64<<10 {
				t.Fatalf("an answer of %d bytes", rec.Body.Len())
			}
		})
	}
}

func TestBinaryModeAppendsTheEventInStructuredMode(t *testing.T) {
	out := &recordingAppender{}
	h, _ := newTestHandler(t, out, Config{})
	rec := send(h, map[string]string{"Content-Type": "application/octet-stream", "Ce-Specversion": "1.0", "Ce-Id": "b1",
		"Ce-Source": "s", "Ce-Type": "blob", "Ce-Subject": "k"}, "\x00\x01\x02")
	if rec.Code != 202 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var ev map[string]any
	if err := json.Unmarshal(out.msgs[0].Value, &ev); err != nil {
		t.Fatal(err)
	}
	if ev["data_base64"] != base64.StdEncoding.EncodeToString([]byte("\x00\x01\x02")) || ev["datacontenttype"] != "application/octet-stream" ||
		ev["subject"] != "k" || string(out.msgs[0].Key) != "k" {
		t.Fatalf("appended %s with key %q", out.msgs[0].Value, out.msgs[0].Key)
	}
}

func TestThe503AnswerNamesNoBrokerAndSpreadsRetries(t *testing.T) {
	out := &recordingAppender{err: errors.New("dial tcp 10.1.2.3:9092: connection refused")}
	h, _ := newTestHandler(t, out, Config{})
	seen := map[string]bool{}
	for range 50 {
		rec := post(h, "application/json", "Bearer "+testKey, ev1)
		if rec.Code != 503 || strings.Contains(rec.Body.String(), "10.1.2.3") {
			t.Fatalf("status %d, body %s: a 503 must name no broker", rec.Code, rec.Body)
		}
		ra, err := strconv.Atoi(rec.Header().Get("Retry-After"))
		if err != nil || ra < 1 || ra > 3 {
			t.Fatalf("Retry-After %q, want 1 to 3 seconds", rec.Header().Get("Retry-After"))
		}
		seen[rec.Header().Get("Retry-After")] = true
	}
	if len(seen) < 2 {
		t.Fatalf("Retry-After was always %v: clients told to come back together come back together", seen)
	}
}

func TestASlowUploadGets408(t *testing.T) {
	out := &recordingAppender{}
	h, _ := newTestHandler(t, out, Config{})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadTimeout = 300 * time.Millisecond
	srv.Start()
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write([]byte("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testKey +
		"\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 1000\r\n\r\n{\"specversion\""))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, _ := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 408") || len(out.msgs) != 0 {
		t.Fatalf("answer %q, appended %d; want 408", buf[:n], len(out.msgs))
	}
}

// blockingAppender holds every write until released.
type blockingAppender struct {
	recordingAppender
	release chan struct{}
}

func (b *blockingAppender) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	<-b.release
	return b.recordingAppender.WriteMessages(ctx, msgs...)
}

func TestRequestsPastTheInFlightBoundGet503(t *testing.T) {
	out := &blockingAppender{release: make(chan struct{})}
	h, _ := newTestHandler(t, out, Config{MaxInFlight: 2, MaxInFlightPerKey: 2})
	done := make(chan int, 2)
	for range 2 {
		go func() { done <- post(h, "application/json", "Bearer "+testKey, ev1).Code }()
	}
	time.Sleep(100 * time.Millisecond)
	rec := post(h, "application/json", "Bearer "+testKey, ev1)
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("a third request while two are in flight: %d %s", rec.Code, rec.Body)
	}
	close(out.release)
	for range 2 {
		if code := <-done; code != 202 {
			t.Fatalf("an in-flight request got %d", code)
		}
	}
	if rec := post(h, "application/json", "Bearer "+testKey, ev1); rec.Code != 202 {
		t.Fatalf("after the others finished: %d", rec.Code)
	}
}

// sizeRefusingAppender is a broker that refuses, record by record, any
// record over its max.message.bytes, as kafka-go reports it.
type sizeRefusingAppender struct {
	recordingAppender
	maxBytes int
}

func (s *sizeRefusingAppender) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	errs := make(kafka.WriteErrors, len(msgs))
	var ok []kafka.Message
	for i, m := range msgs {
		if len(m.Value) > s.maxBytes {
			errs[i] = kafka.MessageSizeTooLarge
			continue
		}
		ok = append(ok, m)
	}
	_ = s.recordingAppender.WriteMessages(ctx, ok...)
	if errs.Count() == 0 {
		return nil
	}
	return errs
}

// An event can pass the body limit and still be too large for the event
// log once stored: binary-mode data that is not JSON grows by a third as
// base64, and a record carries a key and headers too. No retry changes
// that, so the answer is 413 naming the event, never 503.
func TestAnEventTooLargeForTheEventLogIs413NamingIt(t *testing.T) {
	const limit = 64 << 10
	// A real kafka-go writer checks each record against BatchBytes before
	// it dials anything: no broker is needed, none is reached.
	writer := func() Appender {
		return &kafka.Writer{Addr: kafka.TCP("127.0.0.1:1"), Topic: "events", BatchBytes: limit, MaxAttempts: 1}
	}
	binary := map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "b1", "Ce-Source": "s", "Ce-Type": "t"}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for a, b := range m {
			out[a] = b
		}
		return out
	}
	big := func(id string, n int) string {
		return `{"specversion":"1.0","id":"` + id + `","source":"s","type":"t","data":"` + strings.Repeat("x", n) + `"}`
	}
	cases := []struct {
		name      string
		out       Appender
		headers   map[string]string
		body      string
		wantIndex []int
		wantInMsg string
	}{
		{"a binary-mode body that outgrows the record limit as base64 is 413 naming event 0", writer(),
			with(binary, "Content-Type", "application/octet-stream"), strings.Repeat("\xff", limit*7/8), []int{0}, "base64"},
		{"a structured event over the record limit is 413 naming it", writer(),
			map[string]string{"Content-Type": "application/cloudevents+json"}, big("1", limit), []int{0}, "bytes as stored"},
		{"in a batch, the events over the record limit are named", writer(),
			map[string]string{"Content-Type": "application/cloudevents-batch+json"},
			"[" + ev2 + "," + big("a", limit) + "," + ev1 + "," + big("b", limit+10) + "]", []int{1, 3}, "bytes as stored"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if w, ok := c.out.(*kafka.Writer); ok {
				defer w.Close()
			}
			h, _ := newTestHandler(t, c.out, Config{})
			rec := send(h, c.headers, c.body)
			var answer struct {
				Errors []struct {
					Index *int
					Error string
				}
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil || rec.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, body %.300s; want 413", rec.Code, rec.Body)
			}
			var got []int
			for _, e := range answer.Errors {
				if e.Index == nil || !strings.Contains(e.Error, c.wantInMsg) {
					t.Fatalf("error item %+v: want an index and %q", e, c.wantInMsg)
				}
				got = append(got, *e.Index)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.wantIndex) {
				t.Fatalf("named events %v, want %v", got, c.wantIndex)
			}
		})
	}
}

// TestABrokerRefusingOneRecordIsAnUnknownOutcome: a broker refuses a
// record over its limit alone and may append the request's others, so the
// answer is a 503 saying some events may be stored — never a 4xx, which
// promises that none is.
func TestABrokerRefusingOneRecordIsAnUnknownOutcome(t *testing.T) {
	out := &sizeRefusingAppender{maxBytes: 1000}
	h, _ := newTestHandler(t, out, Config{})
	small := `{"specversion":"1.0","id":"s1","source":"s","type":"t"}`
	large := `{"specversion":"1.0","id":"l1","source":"s","type":"t","data":"` + strings.Repeat("x", 2000) + `"}`
	rec := send(h, map[string]string{"Content-Type": "application/cloudevents-batch+json"}, "["+small+","+large+"]")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "may be stored") {
		t.Fatalf("status %d, body %.300s; want 503 saying some events may be stored", rec.Code, rec.Body)
	}
	out.mu.Lock()
	n := len(out.msgs)
	out.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d records appended; the broker took the small one", n)
	}
}

// JSON data in binary mode is stored as sent, so it takes no more room in
// the event log than in the body.
func TestBinaryModeJSONDataIsAppendedAsSent(t *testing.T) {
	out := &recordingAppender{}
	h, _ := newTestHandler(t, out, Config{})
	body := "{ \"html\": \"<b>&</b>\",\n  \"n\": 1.50 }"
	rec := send(h, map[string]string{"Content-Type": "application/json", "Ce-Specversion": "1.0", "Ce-Id": "b1",
		"Ce-Source": "s", "Ce-Type": "t"}, body)
	if rec.Code != 202 || len(out.msgs) != 1 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if v := out.msgs[0].Value; !bytes.Contains(v, []byte(`"data":`+body+`}`)) {
		t.Fatalf("appended %s, want the body as sent in data", v)
	}
}

// slowBody is a request body whose upload has begun and does not end until
// release is closed; then it ends short.
type slowBody struct {
	reading chan struct{} // closed at the first Read
	once    sync.Once
	release chan struct{}
}

func (b *slowBody) Read([]byte) (int, error) {
	b.once.Do(func() { close(b.reading) })
	<-b.release
	return 0, io.ErrUnexpectedEOF
}

// TestOneKeyCannotTakeEverySlot: a slot is taken once the key is known
// and held through the body's upload, and one key holds at most its share
// of them: its slow uploads cannot turn another key away.
func TestOneKeyCannotTakeEverySlot(t *testing.T) {
	const slow, other = "slow-key-0123456789abcdef", "other-key-0123456789abcdef"
	cases := []struct {
		name     string
		cfg      Config
		auth     string // of the slow uploads
		wantHeld int    // slow uploads that got a slot; the others are answered at once
		wantCode int    // the answer to the slow uploads that got none
	}{
		{"a key holds a quarter of max_in_flight by default, and another key's request gets 202",
			Config{MaxInFlight: 8}, "Bearer " + slow, 2, http.StatusServiceUnavailable},
		{"a key holds its configured share, and another key's request gets 202",
			Config{MaxInFlight: 8, MaxInFlightPerKey: 3}, "Bearer " + slow, 3, http.StatusServiceUnavailable},
		{"a key holds one slot when max_in_flight is under four",
			Config{MaxInFlight: 2}, "Bearer " + slow, 1, http.StatusServiceUnavailable},
		{"an unauthenticated upload holds no slot, and a key's request gets 202",
			Config{MaxInFlight: 8}, "Bearer not-a-key-0123456789abcdef", 0, http.StatusUnauthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Keys = Secrets(slow, other)
			h, _ := newTestHandler(t, &recordingAppender{}, c.cfg)
			release := make(chan struct{})
			var wg sync.WaitGroup
			defer wg.Wait()
			defer close(release)
			held := 0
			for range c.cfg.MaxInFlight { // as many as ingest serves at once
				body := &slowBody{reading: make(chan struct{}), release: release}
				answer := make(chan *httptest.ResponseRecorder, 1)
				wg.Go(func() {
					req := httptest.NewRequest(http.MethodPost, "/v1/events", body)
					req.Header.Set("Authorization", c.auth)
					req.Header.Set("Content-Type", "application/cloudevents+json")
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					answer <- rec
				})
				select {
				case <-body.reading:
					held++
				case rec := <-answer:
					if rec.Code != c.wantCode {
						t.Fatalf("a slow upload without a slot: %d %s, want %d", rec.Code, rec.Body, c.wantCode)
					}
					if c.wantCode == http.StatusServiceUnavailable && (rec.Header().Get("Retry-After") == "" ||
						!strings.Contains(rec.Body.String(), "this key's limit")) {
						t.Fatalf("a 503 without Retry-After, or not the key's: %v %s", rec.Header(), rec.Body)
					}
				}
			}
			if held != c.wantHeld {
				t.Fatalf("%d slow uploads hold a slot, want %d", held, c.wantHeld)
			}
			if rec := post(h, "application/cloudevents+json", "Bearer "+other, ev1); rec.Code != http.StatusAccepted {
				t.Fatalf("another key, while the slow uploads hold their slots: %d %s", rec.Code, rec.Body)
			}
		})
	}
}

// TestATracestateIsCarriedOnlyWhenTracingAndBounded: a caller's W3C
// tracestate rides in the records only with tracing on, and then cut to
// W3C's 512 characters, members over 128 first, then from the end; the
// traceparent rides in every record either way.
func TestATracestateIsCarriedOnlyWhenTracingAndBounded(t *testing.T) {
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	members := func(format string, n, valueLen int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf(format, i) + "=" + strings.Repeat("v", valueLen)
		}
		return out
	}
	largest := strings.Join(members("vendor%02d", 32, 256), ",") // 32 members of 265 characters: 8.5 KB
	shorts := members("s%02d", 30, 21)                           // 25 characters each
	mixed := strings.Join(append(append(members("long%d", 1, 200), shorts...), members("tail%d", 1, 200)...), ",")
	cases := []struct {
		name       string
		tracing    bool
		tracestate string
		want       string // the records' tracestate, "" for none
	}{
		{"with tracing off, the largest tracestate is in no record", false, largest, ""},
		{"with tracing off, a short tracestate is in no record either", false, "vendor=x", ""},
		{"with tracing on, a short tracestate is carried as sent", true, "vendor=x,other=y", "vendor=x,other=y"},
		{"with tracing on, the largest tracestate loses every member over 128 characters", true, largest, ""},
		{"with tracing on, members over 128 characters go first, then members from the end", true, mixed,
			strings.Join(shorts[:19], ",")}, // 19 × 25 + 18 commas = 493
		{"with tracing on, a tracestate of more than 32 members is in no record", true,
			strings.Join(members("m%02d", 33, 1), ","), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := &recordingAppender{}
			h, _ := newTestHandler(t, out, Config{Tracing: c.tracing})
			rec := send(h, map[string]string{"Content-Type": "application/cloudevents-batch+json",
				"Traceparent": traceparent, "Tracestate": c.tracestate}, "["+ev1+","+ev2+"]")
			if rec.Code != http.StatusAccepted || len(out.msgs) != 2 {
				t.Fatalf("status %d, %d records: %s", rec.Code, len(out.msgs), rec.Body)
			}
			for i, m := range out.msgs {
				got := map[string]string{}
				for _, hd := range m.Headers {
					got[hd.Key] = string(hd.Value)
				}
				if !strings.HasPrefix(got["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-") {
					t.Fatalf("record %d carries traceparent %q, want the caller's trace", i, got["traceparent"])
				}
				if got["tracestate"] != c.want {
					t.Fatalf("record %d carries tracestate %q (%d characters), want %q", i, got["tracestate"], len(got["tracestate"]), c.want)
				}
				if len(got["tracestate"]) > 512 {
					t.Fatalf("record %d carries a tracestate of %d characters", i, len(got["tracestate"]))
				}
			}
		})
	}
}

// TestContentEncodingIsReadWhole: every Content-Encoding line counts, and
// anything but a single gzip (or none, or identity) is 415, never a body
// decoded by its first coding alone.
func TestContentEncodingIsReadWhole(t *testing.T) {
	cases := []struct {
		name      string
		encodings []string // one header line each
		body      string
		want      int
	}{
		{"gzip alone is decoded", []string{"gzip"}, gzipped(ev1), 202},
		{"identity alone is no coding", []string{"identity"}, ev1, 202},
		{"gzip on two lines is 415, not decoded once", []string{"gzip", "gzip"}, gzipped(ev1), 415},
		{"gzip then br on two lines is 415, not read as gzip", []string{"gzip", "br"}, gzipped(ev1), 415},
		{"identity then gzip on two lines is 415, not read as identity", []string{"identity", "gzip"}, gzipped(ev1), 415},
		{"a list on one line is 415", []string{"gzip, gzip"}, gzipped(ev1), 415},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := &recordingAppender{}
			h, _ := newTestHandler(t, out, Config{})
			req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(c.body))
			req.Header.Set("Authorization", "Bearer "+testKey)
			req.Header.Set("Content-Type", "application/cloudevents+json")
			for _, e := range c.encodings {
				req.Header.Add("Content-Encoding", e)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.want, rec.Body)
			}
			if c.want == 415 && (rec.Header().Get("Accept-Encoding") != "gzip" || len(out.msgs) != 0) {
				t.Fatalf("a 415 without Accept-Encoding: gzip, or with %d records appended", len(out.msgs))
			}
		})
	}
}
