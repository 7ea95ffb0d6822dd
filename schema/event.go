package schema

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// SpecVersion is the only CloudEvents specification version sluice accepts.
const SpecVersion = "1.0"

// MaxAttributeBytes bounds every string attribute (id, source, type, subject,
// …) so that a primary key can never outgrow a btree page.
const MaxAttributeBytes = 1024

// Event is one CloudEvent as sluice stores it. Raw keeps the exact JSON the
// client sent; it is what the Kafka record carries, so nothing the client
// wrote (extension attributes included) is lost on the way.
//
// An Event is a plain value: safe to share between goroutines once built.
type Event struct {
	SpecVersion     string
	ID              string
	Source          string
	Type            string
	Subject         string    // "" when absent
	Time            time.Time // zero when absent
	DataContentType string
	DataSchema      string
	// Data is the "data" member as JSON (any JSON value); nil when absent.
	Data json.RawMessage
	// DataBase64 is the decoded "data_base64" member; nil when absent.
	DataBase64 []byte
	// Extensions holds every attribute the specification does not define,
	// as raw JSON; nil when there are none.
	Extensions map[string]json.RawMessage
	// Raw is the event exactly as received.
	Raw json.RawMessage
}

// PartitionKey is the Kafka record key: the subject when present, else the
// source, so that events about one subject stay in order.
func (e *Event) PartitionKey() string {
	if e.Subject != "" {
		return e.Subject
	}
	return e.Source
}

// extensionName is the CloudEvents rule for attribute names: lower-case
// ASCII letters and digits. The specification advises 20 characters at most;
// we accept up to 64 to be lenient with producers that stretch it.
var extensionName = regexp.MustCompile(`^[a-z0-9]{1,64}$`)

// DecodeEvent parses and validates one CloudEvent in JSON structured mode.
// Errors wrap ErrInvalidEvent and name the attribute at fault.
//
// The checks run in a fixed order, and the first fault is the one reported:
// the string attributes (required, then optional), the specversion, the time,
// data against data_base64, and last the extension attributes.
func DecodeEvent(raw []byte) (Event, error) {
	return decodeEvent(raw, false)
}

// decodeEvent is DecodeEvent; valid says raw is known to be valid JSON (an
// element of a batch the caller validated whole), which spares a scan.
func decodeEvent(raw []byte, valid bool) (Event, error) {
	raw = bytes.TrimSpace(raw)
	// An event's members fit here, on the stack, unless it has more than a
	// dozen or so extensions.
	var room [16]member
	attrs, err := decodeObject(room[:0], raw, valid)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Raw: json.RawMessage(raw)}
	if err := takeRequiredAttributes(attrs, &ev); err != nil {
		return Event{}, err
	}
	opt, err := takeOptionalAttributes(attrs, &ev)
	if err != nil {
		return Event{}, err
	}
	if err := checkSpecVersion(ev.SpecVersion); err != nil {
		return Event{}, err
	}
	if ev.Time, err = parseTime(opt.time); err != nil {
		return Event{}, err
	}
	if err := takeData(attrs, opt.dataBase64, &ev); err != nil {
		return Event{}, err
	}
	if ev.Extensions, err = takeExtensions(attrs); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// decodeObject parses raw as a JSON object, attribute name to raw value.
// The members are appended to ms.
func decodeObject(ms members, raw []byte, valid bool) (members, error) {
	if len(raw) == 0 || raw[0] != '{' || (!valid && !validJSON(raw)) {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidEvent)
	}
	return objectMembers(ms, raw), nil
}

// takeString removes the attribute name from attrs and returns its value,
// which must be a JSON string of at most MaxAttributeBytes. An absent or null
// attribute is "" when optional, an error when required; a required one must
// not be empty either.
func takeString(attrs members, name string, required bool) (string, error) {
	v, ok := attrs.take(name)
	if !ok || string(v) == "null" {
		if required {
			return "", fmt.Errorf("%w: %q is required", ErrInvalidEvent, name)
		}
		return "", nil
	}
	if err := checkJSONText(v); err != nil {
		return "", fmt.Errorf("%w: %q %v", ErrInvalidEvent, name, err)
	}
	if v[0] != '"' {
		return "", fmt.Errorf("%w: %q must be a string", ErrInvalidEvent, name)
	}
	s := unquote(v)
	if required && s == "" {
		return "", fmt.Errorf("%w: %q must not be empty", ErrInvalidEvent, name)
	}
	// data_base64 is bounded by the body's limit alone: binary payloads are
	// what it is for.
	if len(s) > MaxAttributeBytes && name != "data_base64" {
		return "", fmt.Errorf("%w: %q is longer than %d bytes", ErrInvalidEvent, name, MaxAttributeBytes)
	}
	if err := checkAttributeString(s); err != nil {
		return "", fmt.Errorf("%w: %q %v", ErrInvalidEvent, name, err)
	}
	return s, nil
}

// takeRequiredAttributes sets specversion, id, source and type on ev from
// attrs (removing them), each a non-empty string, and reports the first one
// at fault. The specversion's value is checked later, by checkSpecVersion.
func takeRequiredAttributes(attrs members, ev *Event) error {
	return takeStrings(attrs, true, []namedString{
		{"specversion", &ev.SpecVersion},
		{"id", &ev.ID},
		{"source", &ev.Source},
		{"type", &ev.Type},
	})
}

// namedString is an attribute and where its value goes.
type namedString struct {
	name string
	dst  *string
}

// takeStrings takes each of fields from attrs in order, and reports the
// first one at fault.
func takeStrings(attrs members, required bool, fields []namedString) error {
	for _, f := range fields {
		s, err := takeString(attrs, f.name, required)
		if err != nil {
			return err
		}
		*f.dst = s
	}
	return nil
}

// optionalText holds the optional string attributes that need more than a
// string check, for the steps that check them: parseTime and takeData.
type optionalText struct {
	time, dataBase64 string
}

// takeOptionalAttributes sets subject, datacontenttype and dataschema on ev
// from attrs (removing them, along with time and data_base64, whose text it
// returns), each a string when present, and reports the first one at fault.
func takeOptionalAttributes(attrs members, ev *Event) (optionalText, error) {
	var opt optionalText
	err := takeStrings(attrs, false, []namedString{
		{"subject", &ev.Subject},
		{"time", &opt.time},
		{"datacontenttype", &ev.DataContentType},
		{"dataschema", &ev.DataSchema},
		{"data_base64", &opt.dataBase64},
	})
	if err != nil {
		return optionalText{}, err
	}
	return opt, nil
}

// checkSpecVersion reports a specversion other than SpecVersion.
func checkSpecVersion(v string) error {
	if v != SpecVersion {
		return fmt.Errorf("%w: specversion %q is not supported (want %q)", ErrInvalidEvent, v, SpecVersion)
	}
	return nil
}

// parseTime parses the "time" attribute as RFC 3339; "" (absent) is the zero
// time.
func parseTime(text string) (time.Time, error) {
	if text == "" {
		return time.Time{}, nil
	}
	// RFC 3339 allows a lower-case "t" and "z" (section 5.6) and a leap
	// second (":60"), which Go's parser does not.
	norm := strings.ToUpper(text)
	leap := false
	if len(norm) >= 19 && norm[17:19] == "60" {
		norm, leap = norm[:17]+"59"+norm[19:], true
	}
	t, err := time.Parse(time.RFC3339Nano, norm)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: \"time\" %q is not an RFC 3339 timestamp", ErrInvalidEvent, text)
	}
	if leap {
		t = t.Add(time.Second)
	}
	return t, nil
}

// takeData sets ev.Data from the "data" member of attrs (removing it; null is
// absent) and ev.DataBase64 from the decoded dataBase64 text, of which at
// most one may be present.
func takeData(attrs members, dataBase64 string, ev *Event) error {
	if data, ok := attrs.take("data"); ok {
		if err := checkJSONText(data); err != nil {
			return fmt.Errorf("%w: \"data\" %v", ErrInvalidEvent, err)
		}
		if string(data) != "null" {
			ev.Data = data
		}
	}
	if dataBase64 == "" {
		return nil
	}
	if ev.Data != nil {
		return fmt.Errorf("%w: \"data\" and \"data_base64\" are mutually exclusive", ErrInvalidEvent)
	}
	b, err := base64.StdEncoding.DecodeString(dataBase64)
	if err != nil {
		return fmt.Errorf("%w: \"data_base64\" is not valid base64", ErrInvalidEvent)
	}
	ev.DataBase64 = b
	return nil
}

// takeExtensions checks what attrs still holds once the attributes of the
// specification are taken out: extension attributes, each named by the
// CloudEvents rule and a scalar. Null ones are absent. It returns nil when
// there are none.
func takeExtensions(attrs members) (map[string]json.RawMessage, error) {
	var ext map[string]json.RawMessage
	for i := range attrs {
		if attrs[i].taken {
			continue
		}
		name, v := string(attrs[i].name), attrs[i].value
		if v, _ = attrs.take(name); string(v) == "null" {
			continue // CloudEvents: a null attribute is an absent one
		}
		if !extensionName.MatchString(name) {
			return nil, fmt.Errorf("%w: attribute name %q must be lower-case letters and digits", ErrInvalidEvent, name)
		}
		switch v[0] {
		case '{', '[':
			return nil, fmt.Errorf("%w: extension %q must be a string, number or boolean", ErrInvalidEvent, name)
		case '"':
			if err := checkJSONText(v); err != nil {
				return nil, fmt.Errorf("%w: extension %q %v", ErrInvalidEvent, name, err)
			}
			if err := checkAttributeString(unquote(v)); err != nil {
				return nil, fmt.Errorf("%w: extension %q %v", ErrInvalidEvent, name, err)
			}
		}
		if ext == nil {
			ext = make(map[string]json.RawMessage, len(attrs)-i)
		}
		ext[name] = v
	}
	return ext, nil
}
