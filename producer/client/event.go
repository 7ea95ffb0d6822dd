package client

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"mime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/internal/jsontext"
)

// Event is one CloudEvent (specversion 1.0) to publish.
type Event struct {
	// ID, with Source, identifies the event: publishing it twice never
	// yields two rows. Publish fills in an empty ID, in the caller's slice,
	// before the first attempt.
	ID     string
	Source string // required
	Type   string // required
	// Subject is the partition key when set (else Source): events about one
	// subject reach the log in the order published.
	Subject         string
	Time            time.Time // omitted when zero
	DataContentType string
	DataSchema      string
	// Data is the payload, sent byte for byte: as "data" when it is valid
	// JSON and DataContentType is JSON (or empty, which CloudEvents reads as
	// JSON), else as "data_base64". Nil sends no data.
	Data []byte
	// Extensions are extension attributes: lower-case alphanumeric names,
	// and values that are strings, booleans or 32-bit integers (the
	// CloudEvents types; a float or a larger integer is refused: send it
	// as a string).
	Extensions map[string]any
}

// attributes are the names the specification defines; an extension by one
// of these names would give the JSON object a duplicate key.
var attributes = []string{"specversion", "id", "source", "type", "subject", "time",
	"datacontenttype", "dataschema", "data", "data_base64"}

// appendEvent appends e as a CloudEvent in JSON to dst.
func appendEvent(dst []byte, e *Event) ([]byte, error) {
	for _, s := range []struct{ name, v string }{{"id", e.ID}, {"source", e.Source}, {"type", e.Type},
		{"subject", e.Subject}, {"datacontenttype", e.DataContentType}, {"dataschema", e.DataSchema}} {
		if !utf8.ValidString(s.v) {
			return dst, fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidEvent, s.name)
		}
	}
	dst = append(dst, `{"specversion":"1.0","id":`...)
	dst = jsontext.AppendString(dst, e.ID)
	dst = append(dst, `,"source":`...)
	dst = jsontext.AppendString(dst, e.Source)
	dst = append(dst, `,"type":`...)
	dst = jsontext.AppendString(dst, e.Type)
	dst = appendOptional(dst, "subject", e.Subject)
	if !e.Time.IsZero() {
		dst = append(dst, `,"time":"`...)
		dst = e.Time.AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	dst = appendOptional(dst, "datacontenttype", e.DataContentType)
	dst = appendOptional(dst, "dataschema", e.DataSchema)
	if e.Data != nil {
		if isJSON(e.DataContentType) && utf8.Valid(e.Data) && json.Valid(e.Data) {
			dst = append(dst, `,"data":`...)
			dst = append(dst, e.Data...)
		} else {
			dst = append(dst, `,"data_base64":"`...)
			dst = base64.StdEncoding.AppendEncode(dst, e.Data)
			dst = append(dst, '"')
		}
	}
	names := make([]string, 0, len(e.Extensions))
	for name := range e.Extensions {
		names = append(names, name)
	}
	slices.Sort(names) // the same event encodes to the same bytes
	for _, name := range names {
		if slices.Contains(attributes, name) || !utf8.ValidString(name) {
			return dst, fmt.Errorf("%w: %q cannot be an extension attribute", ErrInvalidEvent, name)
		}
		dst = append(dst, ',')
		dst = jsontext.AppendString(dst, name)
		dst = append(dst, ':')
		var err error
		if dst, err = appendExtension(dst, e.Extensions[name]); err != nil {
			return dst, fmt.Errorf("%w: extension %q: %v", ErrInvalidEvent, name, err)
		}
	}
	return append(dst, '}'), nil
}

func appendOptional(dst []byte, name, v string) []byte {
	if v == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return jsontext.AppendString(dst, v)
}

func appendExtension(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		if !utf8.ValidString(v) {
			return dst, fmt.Errorf("not valid UTF-8")
		}
		return jsontext.AppendString(dst, v), nil
	case bool:
		return strconv.AppendBool(dst, v), nil
	case int:
		return appendInteger(dst, int64(v))
	case int8:
		return appendInteger(dst, int64(v))
	case int16:
		return appendInteger(dst, int64(v))
	case int32:
		return appendInteger(dst, int64(v))
	case int64:
		return appendInteger(dst, v)
	case uint8:
		return appendInteger(dst, int64(v))
	case uint16:
		return appendInteger(dst, int64(v))
	case uint32:
		return appendInteger(dst, int64(v))
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			return dst, fmt.Errorf("%s is not an integer: CloudEvents has no other number type; send it as a string", v)
		}
		return appendInteger(dst, n)
	case float32, float64:
		return dst, fmt.Errorf("a %T: CloudEvents has no floating-point attribute type; send it as a string", v)
	}
	return dst, fmt.Errorf("a %T is not a string, boolean or integer", v)
}

// appendInteger appends a CloudEvents Integer: a 32-bit signed integer,
// which is all the server accepts.
func appendInteger(dst []byte, n int64) ([]byte, error) {
	if n < math.MinInt32 || n > math.MaxInt32 {
		return dst, fmt.Errorf("%d is outside the 32-bit range of a CloudEvents Integer; send it as a string", n)
	}
	return strconv.AppendInt(dst, n, 10), nil
}

// isJSON reports whether a datacontenttype says JSON: empty (CloudEvents'
// default), application/json, or a +json suffix.
func isJSON(contentType string) bool {
	switch contentType {
	case "", "application/json": // most events: no parsing, which allocates
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json"))
}

// newID returns a random UUID (version 4).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}
