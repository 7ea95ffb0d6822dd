package schema

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// binaryHeaders are the headers of a binary-mode request of the given
// Content-Type, with more ce-* headers from extra (name, value, …).
func binaryHeaders(contentType string, extra ...string) http.Header {
	h := http.Header{}
	h.Set("Ce-Specversion", "1.0")
	h.Set("Ce-Id", "b1")
	h.Set("Ce-Source", "/sensors/7")
	h.Set("Ce-Type", "reading")
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h.Set(extra[i], extra[i+1])
	}
	return h
}

func TestBinaryEventStoresJSONDataAsSent(t *testing.T) {
	cases := []struct {
		name, contentType, body string
	}{
		{"spaces and newlines are kept", "application/json", "{ \"celsius\" : 21.5,\n  \"tags\" : [ 1, 2 ] }"},
		{"<, > and & are not escaped", "application/json", `{"html":"<b>fish & chips</b>"}`},
		{"U+2028 and U+2029 are not escaped", "application/json", "{\"text\":\"a\u2028b\u2029c\"}"},
		{"the escapes the client chose are kept", "application/json", `{"e":"\u00e9\/\t","f":"é"}`},
		{"a number keeps its digits", "application/json", `{"n":1.000000000000000000001e5,"m":-0.0}`},
		{"the order of members is kept", "application/json", `{"z":1,"a":2,"m":3}`},
		{"a JSON string is data", "application/json", `"just a string"`},
		{"a +json media type is JSON", "application/vnd.example+json; charset=utf-8", `{"a" : 1}`},
		{"a json subtype of another type is JSON, as CloudEvents has it", "text/json", `[1, 2]`},
		{"whitespace around the value is not data", "application/json", "\n  {\"a\":1}  \r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, err := BinaryEvent(binaryHeaders(c.contentType), []byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			ev, err := DecodeEvent(raw)
			if err != nil {
				t.Fatalf("%s: %v", raw, err)
			}
			if want := strings.Trim(c.body, " \t\r\n"); string(ev.Data) != want {
				t.Fatalf("data %s, want it as sent: %s", ev.Data, want)
			}
			if ev.DataBase64 != nil || ev.DataContentType != c.contentType {
				t.Fatalf("data_base64 %q, datacontenttype %q", ev.DataBase64, ev.DataContentType)
			}
			if overhead := len(raw) - len(c.body); overhead > 200 {
				t.Fatalf("the event is %d bytes larger than its data", overhead)
			}
		})
	}
}

func TestBinaryEventStoresOtherDataAsBase64(t *testing.T) {
	cases := []struct {
		name, contentType, body string
	}{
		{"bytes that are not UTF-8", "application/octet-stream", "\x00\x01\xff\xfe"},
		{"text that is not JSON", "text/plain", "hello <world> & more"},
		{"JSON under a media type that is not JSON", "text/plain", `{"a":1}`},
		{"a body with no media type", "", "anything"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, err := BinaryEvent(binaryHeaders(c.contentType), []byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			ev, err := DecodeEvent(raw)
			if err != nil {
				t.Fatalf("%s: %v", raw, err)
			}
			if ev.Data != nil || !bytes.Equal(ev.DataBase64, []byte(c.body)) {
				t.Fatalf("data %s, data_base64 %q; want the body as data_base64", ev.Data, ev.DataBase64)
			}
			if !bytes.Contains(raw, []byte(`"data_base64":"`+base64.StdEncoding.EncodeToString([]byte(c.body))+`"`)) {
				t.Fatalf("%s does not hold the body in base64", raw)
			}
		})
	}
}

func TestBinaryEventStoresAttributesAsTheHeadersSay(t *testing.T) {
	raw, err := BinaryEvent(binaryHeaders("application/json", "Ce-Subject", "a<b>&c", "Ce-Comment", `say "hi" \ there`,
		"Ce-Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"subject":"a<b>&c"`)) || !bytes.Contains(raw, []byte(`"comment":"say \"hi\" \\ there"`)) {
		t.Fatalf("attributes re-escaped: %s", raw)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m["subject"] != "a<b>&c" || m["comment"] != `say "hi" \ there` || m["traceparent"] == nil {
		t.Fatalf("decoded %v", m)
	}
}

func TestBinaryEventRefuses(t *testing.T) {
	cases := []struct {
		name   string
		header http.Header
		body   string
		want   string
	}{
		{"JSON data that is not JSON", binaryHeaders("application/json"), "{not json", "not valid JSON"},
		{"a +json body that is not JSON", binaryHeaders("application/cloudevents+json"), "[1,", "not valid JSON"},
		{"a header that would be the data", binaryHeaders("text/plain", "Ce-Data", "x"), "hi", "the body is the data"},
		{"a header given twice in case only", func() http.Header {
			h := binaryHeaders("text/plain")
			h["ce-subject"] = []string{"a"}
			h["CE-SUBJECT"] = []string{"b"}
			return h
		}(), "hi", "appears more than once"},
	}
	for _, c := range cases {
		t.Run(c.name+" is refused", func(t *testing.T) {
			_, err := BinaryEvent(c.header, []byte(c.body))
			if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrInvalidEvent saying %q", err, c.want)
			}
		})
	}
	// What DecodeEvent refuses in structured mode it refuses in binary
	// mode: the data is checked where it is stored.
	for _, c := range []struct{ name, body, want string }{
		{"a member named twice in data", `{"a":1,"a":2}`, "twice in one object"},
		{"a number PostgreSQL cannot hold in data", `[1e200000]`, "PostgreSQL's numeric"},
		{"a NUL in data", `{"a":"\u0000"}`, `\u0000`},
	} {
		t.Run(c.name+" is refused", func(t *testing.T) {
			raw, err := BinaryEvent(binaryHeaders("application/json"), []byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeEvent(raw); !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrInvalidEvent saying %q", err, c.want)
			}
		})
	}
}
