package schema

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDecodeEventAcceptsTheSamples(t *testing.T) {
	files, err := filepath.Glob("testdata/valid_*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeEvent(raw); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestDecodeEventKeepsEveryAttribute(t *testing.T) {
	raw, _ := os.ReadFile("testdata/valid_full.json")
	ev, err := DecodeEvent(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2025, 5, 9, 14, 7, 0, 0, time.UTC)
	switch {
	case ev.ID != "order-1042" || ev.Source != "shop/checkout" || ev.Type != "com.example.order.created":
		t.Errorf("required attributes: %+v", ev)
	case ev.Subject != "customer-77" || !ev.Time.Equal(want):
		t.Errorf("subject/time: %q %v", ev.Subject, ev.Time)
	case ev.DataSchema == "" || ev.DataContentType != "application/json":
		t.Errorf("content attributes: %q %q", ev.DataSchema, ev.DataContentType)
	case !strings.Contains(string(ev.Data), `"currency": "EUR"`):
		t.Errorf("data: %s", ev.Data)
	case string(ev.Extensions["traceparent"]) == "":
		t.Errorf("extension lost: %v", ev.Extensions)
	case string(ev.Raw) != strings.TrimSpace(string(raw)):
		t.Errorf("raw bytes changed")
	}
}

func TestPartitionKeyIsSubjectElseSource(t *testing.T) {
	withSubject := Event{Source: "s", Subject: "customer-1"}
	withoutSubject := Event{Source: "s"}
	if withSubject.PartitionKey() != "customer-1" || withoutSubject.PartitionKey() != "s" {
		t.Fatalf("got %q and %q", withSubject.PartitionKey(), withoutSubject.PartitionKey())
	}
}

func TestDecodeEventRejects(t *testing.T) {
	long := strings.Repeat("x", MaxAttributeBytes+1)
	cases := []struct {
		name, raw, want string
	}{
		{"a JSON array is not an event", `[]`, "not a JSON object"},
		{"a JSON string is not an event", `"hello"`, "not a JSON object"},
		{"null is not an event", `null`, "not a JSON object"},
		{"malformed JSON is refused", `{"specversion":`, "not a JSON object"},
		{"specversion is required", `{"id":"1","source":"s","type":"t"}`, `"specversion" is required`},
		{"specversion 0.3 is refused", `{"specversion":"0.3","id":"1","source":"s","type":"t"}`, `specversion "0.3" is not supported`},
		{"specversion must be a string", `{"specversion":1.0,"id":"1","source":"s","type":"t"}`, `"specversion" must be a string`},
		{"id is required", `{"specversion":"1.0","source":"s","type":"t"}`, `"id" is required`},
		{"id must not be empty", `{"specversion":"1.0","id":"","source":"s","type":"t"}`, `"id" must not be empty`},
		{"id must be a string", `{"specversion":"1.0","id":7,"source":"s","type":"t"}`, `"id" must be a string`},
		{"a null id is a missing id", `{"specversion":"1.0","id":null,"source":"s","type":"t"}`, `"id" is required`},
		{"source is required", `{"specversion":"1.0","id":"1","type":"t"}`, `"source" is required`},
		{"type is required", `{"specversion":"1.0","id":"1","source":"s"}`, `"type" is required`},
		{"an overlong id is refused", `{"specversion":"1.0","id":"` + long + `","source":"s","type":"t"}`, `"id" is longer than`},
		{"subject must be a string", `{"specversion":"1.0","id":"1","source":"s","type":"t","subject":{}}`, `"subject" must be a string`},
		{"time must be RFC 3339", `{"specversion":"1.0","id":"1","source":"s","type":"t","time":"yesterday"}`, `not an RFC 3339 timestamp`},
		{"time without a zone is refused", `{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2025-05-09T14:07:00"}`, `not an RFC 3339 timestamp`},
		{"data and data_base64 exclude each other", `{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"AA=="}`, "mutually exclusive"},
		{"data_base64 must be base64", `{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"%%%"}`, "not valid base64"},
		{"extension names are lower-case alphanumerics", `{"specversion":"1.0","id":"1","source":"s","type":"t","Trace-Id":"x"}`, "must be lower-case letters and digits"},
		{"extension values are scalars", `{"specversion":"1.0","id":"1","source":"s","type":"t","ext":{"a":1}}`, "must be a string, number or boolean"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeEvent([]byte(c.raw))
			if !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("err = %v, want ErrInvalidEvent", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %q, want it to say %q", err, c.want)
			}
		})
	}
}

func TestDecodeRequest(t *testing.T) {
	batch, _ := os.ReadFile("testdata/batch.json")
	single, _ := os.ReadFile("testdata/valid_minimal.json")
	cases := []struct {
		name       string
		mediaType  string
		body       string
		wantEvents int
		wantFaults []int
		wantErr    string
	}{
		{"a batch decodes every event", MediaTypeBatch, string(batch), 3, nil, ""},
		{"application/json takes a batch", MediaTypeJSON, string(batch), 3, nil, ""},
		{"application/json takes one event", MediaTypeJSON, string(single), 1, nil, ""},
		{"structured mode takes one event", MediaTypeEvent, string(single), 1, nil, ""},
		{"structured mode refuses an array", MediaTypeEvent, string(batch), 0, nil, "holds one event"},
		{"batch mode refuses a lone object", MediaTypeBatch, string(single), 0, nil, "holds an array"},
		{"an empty batch is refused", MediaTypeBatch, `[]`, 0, nil, "the batch is empty"},
		{"an empty body is refused", MediaTypeJSON, ``, 0, nil, "empty body"},
		{"malformed JSON is refused", MediaTypeJSON, `[{"id":`, 0, nil, "not valid JSON"},
		{"every invalid event is reported by index", MediaTypeBatch,
			`[{"specversion":"1.0","id":"1","source":"s","type":"t"},{"id":"2"},7]`, 3, []int{1, 2}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			events, faults, err := DecodeRequest(c.mediaType, []byte(c.body))
			if c.wantErr != "" {
				if !errors.Is(err, ErrMalformedBody) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want ErrMalformedBody saying %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != c.wantEvents {
				t.Errorf("events = %d, want %d", len(events), c.wantEvents)
			}
			var got []int
			for _, f := range faults {
				got = append(got, f.Index)
			}
			if len(got) != len(c.wantFaults) {
				t.Fatalf("faults at %v, want %v", got, c.wantFaults)
			}
			for i := range got {
				if got[i] != c.wantFaults[i] {
					t.Fatalf("faults at %v, want %v", got, c.wantFaults)
				}
			}
		})
	}
}

func TestParseMediaType(t *testing.T) {
	cases := []struct {
		header string
		want   string
		ok     bool
	}{
		{"application/cloudevents+json", MediaTypeEvent, true},
		{"application/cloudevents-batch+json; charset=utf-8", MediaTypeBatch, true},
		{"Application/JSON", MediaTypeJSON, true},
		{"text/plain", "", false},
		{"", "", false},
		{"application/json; charset=latin1", "", false},
		{"application/x-www-form-urlencoded", "", false},
	}
	for _, c := range cases {
		got, err := ParseMediaType(c.header)
		if c.ok != (err == nil) || got != c.want {
			t.Errorf("ParseMediaType(%q) = %q, %v", c.header, got, err)
		}
		if err != nil && !errors.Is(err, ErrUnsupportedMediaType) {
			t.Errorf("ParseMediaType(%q): %v is not ErrUnsupportedMediaType", c.header, err)
		}
	}
}
