package schema

import (
	"encoding/base64"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/sluicehq/sluice/internal/jsontext"
)

// IsBinaryMode reports whether a request is a CloudEvent in the HTTP
// binding's binary mode: its attributes in ce-* headers and its data as the
// body, of any media type. Structured and batch requests carry a
// CloudEvents media type instead.
func IsBinaryMode(h http.Header) bool {
	if h.Get("Ce-Specversion") == "" {
		return false
	}
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt != MediaTypeEvent && mt != MediaTypeBatch
}

// BinaryEvent turns a binary-mode request into the event's JSON in
// structured mode, which is what sluice appends and what DecodeEvent then
// validates like any other: the ce-* headers become attributes (their
// values percent-decoded, as the binding has it), Content-Type becomes
// datacontenttype, and the body becomes data.
//
// A body of a JSON media type (*/json or */*+json, as CloudEvents defines
// it) is data as sent, byte for byte but the whitespace around it: not
// re-encoded, so neither compacted nor escaped (encoding/json would write
// "<" as "\u003c"), and what the target stores is what the client sent and
// DecodeEvent checked. Any other body is data_base64, as the JSON format
// has binary data, a third larger than the body. The result is the record's
// value, so its length is what the event log must take.
func BinaryEvent(h http.Header, body []byte) ([]byte, error) {
	attrs := make(map[string]string, len(h))
	for name, values := range h {
		lower := strings.ToLower(name)
		attr, ok := strings.CutPrefix(lower, "ce-")
		if !ok || len(values) == 0 {
			continue
		}
		if len(values) > 1 {
			return nil, fmt.Errorf("%w: header %s appears %d times", ErrInvalidEvent, name, len(values))
		}
		if _, dup := attrs[attr]; dup { // keys that differ in case only, in a header map not built by net/http
			return nil, fmt.Errorf("%w: header %s appears more than once", ErrInvalidEvent, name)
		}
		v, err := url.PathUnescape(values[0])
		if err != nil {
			return nil, fmt.Errorf("%w: header %s is not percent-encoded correctly", ErrInvalidEvent, name)
		}
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("%w: %q %v", ErrInvalidEvent, attr, errInvalidUTF8)
		}
		switch attr {
		case "data", "data_base64", "datacontenttype":
			return nil, fmt.Errorf("%w: header %s: in binary mode the body is the data and Content-Type its media type", ErrInvalidEvent, name)
		}
		attrs[attr] = v
	}
	contentType := h.Get("Content-Type")
	if contentType != "" {
		attrs["datacontenttype"] = contentType
	}
	names := make([]string, 0, len(attrs))
	size := len(`{,"data_base64":""}`) + base64.StdEncoding.EncodedLen(len(body))
	for name, v := range attrs {
		names = append(names, name)
		size += len(name) + len(v) + len(`,"":""`)
	}
	slices.Sort(names) // the same request is the same record
	out := make([]byte, 0, size)
	out = append(out, '{')
	for i, name := range names {
		if i > 0 {
			out = append(out, ',')
		}
		out = jsontext.AppendString(out, name)
		out = append(out, ':')
		out = jsontext.AppendString(out, attrs[name])
	}
	if len(body) == 0 {
		return append(out, '}'), nil
	}
	if len(names) > 0 {
		out = append(out, ',')
	}
	if mt, _, _ := mime.ParseMediaType(contentType); isJSONMediaType(mt) {
		if !validJSON(body) {
			return nil, fmt.Errorf("%w: the body is %s but not valid JSON", ErrInvalidEvent, mt)
		}
		out = append(out, `"data":`...)
		out = append(out, trimSpace(body)...)
	} else {
		out = append(out, `"data_base64":"`...)
		out = base64.StdEncoding.AppendEncode(out, body)
		out = append(out, '"')
	}
	return append(out, '}'), nil
}

// isJSONMediaType reports whether the media type mt (lower case, without
// parameters) declares JSON: CloudEvents' rule is a subtype of "json" or
// one ending in "+json".
func isJSONMediaType(mt string) bool {
	return strings.HasSuffix(mt, "/json") || strings.HasSuffix(mt, "+json")
}
