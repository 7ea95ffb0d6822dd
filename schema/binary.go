package schema

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
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
// datacontenttype, and the body becomes data — as JSON when the media type
// is JSON, else base64 in data_base64.
func BinaryEvent(h http.Header, body []byte) ([]byte, error) {
	attrs := map[string]any{}
	for name, values := range h {
		lower := strings.ToLower(name)
		attr, ok := strings.CutPrefix(lower, "ce-")
		if !ok || len(values) == 0 {
			continue
		}
		if len(values) > 1 {
			return nil, fmt.Errorf("%w: header %s appears %d times", ErrInvalidEvent, name, len(values))
		}
		v, err := url.PathUnescape(values[0])
		if err != nil {
			return nil, fmt.Errorf("%w: header %s is not percent-encoded correctly", ErrInvalidEvent, name)
		}
		if !utf8.ValidString(v) { // json.Marshal would turn it into U+FFFD silently
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
	if len(body) > 0 {
		mt, _, _ := mime.ParseMediaType(contentType)
		if mt == MediaTypeJSON || strings.HasSuffix(mt, "+json") {
			if !validJSON(body) {
				return nil, fmt.Errorf("%w: the body is %s but not valid JSON", ErrInvalidEvent, mt)
			}
			attrs["data"] = json.RawMessage(body)
		} else {
			attrs["data_base64"] = base64.StdEncoding.EncodeToString(body)
		}
	}
	return json.Marshal(attrs)
}
