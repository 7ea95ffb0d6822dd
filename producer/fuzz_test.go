package producer

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/schema"
)

// FuzzHandler drives the ingest handler end to end with arbitrary bodies and
// content types: it must never panic, a refused request must append
// nothing, and an accepted one must append exactly the events it counted,
// each of which decodes again. Seeds: the schema's sample events and the
// hostile inputs of the hardening tests (go test -fuzz FuzzHandler).
func FuzzHandler(f *testing.F) {
	samples, _ := filepath.Glob("../schema/testdata/*.json")
	for _, path := range samples {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add("application/json", "", b)
		f.Add("application/cloudevents+json", "", b)
		f.Add("application/cloudevents-batch+json", "", b)
	}
	for _, s := range []string{`[]`, `[{},{},{}]`, `{"specversion":"1.0","id":"\ud800","source":"s","type":"t"}`,
		"{\"specversion\":\"1.0\",\"id\":\"\xff\",\"source\":\"s\",\"type\":\"t\"}", `{"specversion":"1.0","id":"1","source":"s","type":"t","data":"\u0000"}`,
		`[` + ev1 + `,` + ev2 + `]`, `{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2016-12-31t23:59:60z"}`} {
		f.Add("application/cloudevents-batch+json", "", []byte(s))
		f.Add("application/cloudevents+json", "", []byte(s))
	}
	f.Add("text/plain", "ce-binary", []byte("hello"))
	f.Add("application/json", "ce-binary", []byte(`{"a":1}`))
	f.Fuzz(func(t *testing.T, contentType, mode string, body []byte) {
		out := &recordingAppender{}
		h, err := NewHandler(Config{Keys: Secrets(testKey), MaxEvents: 50, MaxBodyBytes: 64 << 10}, out, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", contentType)
		if mode == "ce-binary" {
			req.Header.Set("Ce-Specversion", "1.0")
			req.Header.Set("Ce-Id", "fuzz")
			req.Header.Set("Ce-Source", "fuzz")
			req.Header.Set("Ce-Type", "fuzz")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("answer %d is not JSON: %q", rec.Code, rec.Body)
		}
		if rec.Code != http.StatusAccepted {
			if len(out.msgs) != 0 {
				t.Fatalf("answer %d, yet %d records were appended", rec.Code, len(out.msgs))
			}
			return
		}
		var ok struct{ Accepted int }
		if err := json.Unmarshal(rec.Body.Bytes(), &ok); err != nil || ok.Accepted != len(out.msgs) {
			t.Fatalf("202 %s but %d records appended", rec.Body, len(out.msgs))
		}
		for _, m := range out.msgs {
			if _, err := schema.DecodeEvent(m.Value); err != nil {
				t.Fatalf("an appended record does not decode: %v: %q", err, m.Value)
			}
		}
	})
}
