package schema

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
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
		{"an empty batch is valid, as the HTTP binding has it", MediaTypeBatch, `[]`, 0, nil, ""},
		{"an empty body is refused", MediaTypeJSON, ``, 0, nil, "empty body"},
		{"malformed JSON is refused", MediaTypeJSON, `[{"id":`, 0, nil, "not valid JSON"},
		{"something after the batch is refused", MediaTypeBatch, `[] []`, 0, nil, "something follows"},
		{"every invalid event is reported by index", MediaTypeBatch,
			`[{"specversion":"1.0","id":"1","source":"s","type":"t"},{"id":"2"},7]`, 3, []int{1, 2}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			events, faults, err := DecodeRequest(c.mediaType, []byte(c.body), 0)
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

func TestAHostileBatchIsRefusedBeforeItsEventsAreDecoded(t *testing.T) {
	body := "[" + strings.Repeat("{},", 349_999) + "{}]" // 1 MiB of empty objects
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, faults, err := DecodeRequest(MediaTypeBatch, []byte(body), 1000)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooManyEvents) || faults != nil {
		t.Fatalf("err %v (%d faults), want ErrTooManyEvents and no decoding", err, len(faults))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Fatalf("refusing it allocated %d MiB", alloc>>20)
	}
}

func TestStringsAreStrict(t *testing.T) {
	cases := []struct {
		name, event, want string
	}{
		{"invalid UTF-8 in an id", "{\"specversion\":\"1.0\",\"id\":\"\xff\",\"source\":\"s\",\"type\":\"t\"}", `"id" is not valid UTF-8`},
		{"a lone high surrogate", `{"specversion":"1.0","id":"\ud800","source":"s","type":"t"}`, `"id" holds a lone UTF-16 surrogate`},
		{"a lone low surrogate", `{"specversion":"1.0","id":"a\udc00","source":"s","type":"t"}`, `"id" holds a lone UTF-16 surrogate`},
		{"a control character in the source", `{"specversion":"1.0","id":"1","source":"s\u0007","type":"t"}`, `"source" holds a control character`},
		{"a C1 control character in the type", `{"specversion":"1.0","id":"1","source":"s","type":"t\u0085"}`, `"type" holds a control character`},
		{"a NUL in data", `{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"a":"x\u0000y"}}`, `"data" holds \u0000`},
		{"a lone surrogate in data", `{"specversion":"1.0","id":"1","source":"s","type":"t","data":"\udfff"}`, `"data" holds a lone UTF-16 surrogate`},
		{"a control character in an extension", `{"specversion":"1.0","id":"1","source":"s","type":"t","trace":"\u001b[31m"}`, `extension "trace" holds a control character`},
	}
	for _, c := range cases {
		_, err := DecodeEvent([]byte(c.event))
		if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	ok := []struct{ name, event string }{
		{"a surrogate pair (an emoji) is fine", `{"specversion":"1.0","id":"\ud83d\ude00","source":"s","type":"t"}`},
		{"an escaped backslash before u0000 is text, not a NUL", `{"specversion":"1.0","id":"1","source":"s","type":"t","data":"\\u0000"}`},
		{"tabs and newlines in data are fine", `{"specversion":"1.0","id":"1","source":"s","type":"t","data":"a\tb\nc"}`},
		{"data_base64 larger than an attribute", `{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"` + strings.Repeat("QUJD", 2000) + `"}`},
		{"a lower-case t and z", `{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2025-05-09t14:07:00z"}`},
		{"a leap second", `{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2016-12-31T23:59:60Z"}`},
	}
	for _, c := range ok {
		if _, err := DecodeEvent([]byte(c.event)); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	ev, _ := DecodeEvent([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2016-12-31T23:59:60Z"}`))
	if want := time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC); !ev.Time.Equal(want) {
		t.Errorf("the leap second is %v, want %v", ev.Time, want)
	}
}

// event is a valid event with members added at its end.
func event(members string) string {
	return `{"specversion":"1.0","id":"1","source":"s","type":"t"` + members + `}`
}

func TestDecodeEventRefusesAMemberNamedTwice(t *testing.T) {
	cases := []struct {
		name, raw, want string
	}{
		{"an id given twice is refused", `{"specversion":"1.0","id":"a","id":"b","source":"s","type":"t"}`, `member "id" appears more than once`},
		{"a source given twice is refused, though each copy is valid", `{"specversion":"1.0","id":"a","source":"//bank/","source":"s","type":"t"}`, `member "source" appears more than once`},
		{"a required attribute given twice is refused before a missing one is reported", `{"id":"a","id":"b"}`, `member "id" appears more than once`},
		{"an attribute given twice is refused when one copy is null", event(`,"subject":null,"subject":"x"`), `member "subject" appears more than once`},
		{"an attribute given twice is refused when the second copy is null", event(`,"subject":"x","subject":null`), `member "subject" appears more than once`},
		{"an escaped name is the name it stands for", event(`,"\u0069d":"2"`), `member "id" appears more than once`},
		{"data given twice is refused", event(`,"data":1,"data":{"a":1}`), `member "data" appears more than once`},
		{"data_base64 given twice is refused", event(`,"data_base64":"AA==","data_base64":"%%"`), `member "data_base64" appears more than once`},
		{"an extension given twice is refused", event(`,"trace":"a","trace":"b"`), `member "trace" appears more than once`},
		{"an extension given twice as null is refused", event(`,"trace":null,"trace":null`), `member "trace" appears more than once`},
		{"an extension given twice far apart is refused", event(`,"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"a":13`), `member "a" appears more than once`},
		{"a null member's name is checked too", event(`,"Trace-Id":null`), "must be lower-case letters and digits"},
		{"a null member with an empty name is refused", event(`,"":null`), "must be lower-case letters and digits"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeEvent([]byte(c.raw))
			if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrInvalidEvent saying %q", err, c.want)
			}
		})
	}
}

func TestExtensionNumbersAreCloudEventsIntegers(t *testing.T) {
	cases := []struct {
		name, value string
		ok          bool
	}{
		{"a small integer is one", `7`, true},
		{"zero is one", `0`, true},
		{"minus zero is one: an integer component with a minus sign", `-0`, true},
		{"the largest 32-bit integer is one", `2147483647`, true},
		{"the smallest 32-bit integer is one", `-2147483648`, true},
		{"a fraction is not one", `1.5`, false},
		{"an exponent beyond float64 is not one", `1e400`, false},
		{"one past the largest is not one", `2147483648`, false},
		{"one past the smallest is not one", `-2147483649`, false},
		{"a whole number written with an exponent is not one: the JSON format allows digits alone", `1e3`, false},
		{"a whole number written with a point is not one", `1.0`, false},
		{"a number of many digits is not one", `123456789012345678901234567890`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, err := DecodeEvent([]byte(event(`,"count":` + c.value)))
			if c.ok {
				if err != nil || string(ev.Extensions["count"]) != c.value {
					t.Fatalf("err = %v, extension %s; want %s accepted", err, ev.Extensions["count"], c.value)
				}
				return
			}
			if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), `extension "count"`) || !strings.Contains(err.Error(), "Integer") {
				t.Fatalf("err = %v, want ErrInvalidEvent naming the extension and the Integer type", err)
			}
		})
	}
}

// wideEvent is an event of n members made by member, after the required
// attributes, with data (or nothing) last.
func wideEvent(n int, member func(b *strings.Builder, i int), data string) []byte {
	var b strings.Builder
	b.WriteString(`{"specversion":"1.0","id":"1","source":"s","type":"t"`)
	for i := range n {
		member(&b, i)
	}
	b.WriteString(data)
	b.WriteString("}")
	return []byte(b.String())
}

// Decoding was quadratic in the members: each attribute was looked up by a
// scan of every member (40,000 extension members took 10 s, 81 s under
// -race, so this test ran for many minutes). Time is no assertion here;
// memory is: decoding must complete, and allocate within a small multiple
// of the body, the same multiple at 100,000 members as at 10,000.
func TestDecodingIsLinearInTheMembers(t *testing.T) {
	extensions := func(b *strings.Builder, i int) { fmt.Fprintf(b, `,"e%d":%d`, i, i) }
	nulls := func(b *strings.Builder, i int) { fmt.Fprintf(b, `,"e%d":null`, i) }
	none := func(*strings.Builder, int) {}
	dataMembers := func(n int) string {
		var b strings.Builder
		b.WriteString(`,"data":{"x":0`)
		for i := range n {
			fmt.Fprintf(&b, `,"member%d":"value"`, i)
		}
		b.WriteString("}")
		return b.String()
	}
	dataNumbers := func(n int) string {
		var b strings.Builder
		b.WriteString(`,"data":[0`)
		for i := range n {
			fmt.Fprintf(&b, `,%d.5e-3`, i)
		}
		b.WriteString("]")
		return b.String()
	}
	cases := []struct {
		name     string
		body     func(n int) []byte
		wantExts func(n int) int
	}{
		{"an event of many extension members decodes in linear time and memory",
			func(n int) []byte { return wideEvent(n, extensions, "") }, func(n int) int { return n }},
		{"an event of many null extension members decodes in linear time and memory",
			func(n int) []byte { return wideEvent(n, nulls, "") }, func(int) int { return 0 }},
		{"data of many members is checked for names given twice in linear time and memory",
			func(n int) []byte { return wideEvent(0, none, dataMembers(n)) }, func(int) int { return 0 }},
		{"data of many numbers is checked against PostgreSQL's range in linear time and memory",
			func(n int) []byte { return wideEvent(0, none, dataNumbers(n)) }, func(int) int { return 0 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			perByte := map[int]float64{}
			for _, n := range []int{10_000, 100_000} {
				body := c.body(n)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				ev, err := DecodeEvent(body)
				runtime.ReadMemStats(&after)
				if err != nil {
					t.Fatalf("%d members: %v", n, err)
				}
				if len(ev.Extensions) != c.wantExts(n) {
					t.Fatalf("%d members: %d extensions, want %d", n, len(ev.Extensions), c.wantExts(n))
				}
				perByte[n] = float64(after.TotalAlloc-before.TotalAlloc) / float64(len(body))
			}
			t.Logf("bytes allocated a body byte: %.2f at 10,000, %.2f at 100,000", perByte[10_000], perByte[100_000])
			// The map of extensions is most of it: about 9 bytes a body
			// byte for members as short as these.
			if perByte[100_000] > 16 {
				t.Errorf("decoding allocated %.1f bytes a body byte", perByte[100_000])
			}
			if perByte[100_000] > 2*perByte[10_000]+1 {
				t.Errorf("allocation grows faster than the body: %.1f bytes a byte at 10,000 members, %.1f at 100,000", perByte[10_000], perByte[100_000])
			}
		})
	}
}
