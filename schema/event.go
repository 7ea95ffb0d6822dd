package schema

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
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
func DecodeEvent(raw []byte) (Event, error) {
	raw = bytes.TrimSpace(raw)
	var attrs map[string]json.RawMessage
	if err := json.Unmarshal(raw, &attrs); err != nil || attrs == nil {
		return Event{}, fmt.Errorf("%w: not a JSON object", ErrInvalidEvent)
	}
	ev := Event{Raw: json.RawMessage(raw)}
	var err error
	str := func(name string, required bool) string {
		if err != nil {
			return ""
		}
		v, ok := attrs[name]
		delete(attrs, name)
		if !ok || string(v) == "null" {
			if required {
				err = fmt.Errorf("%w: %q is required", ErrInvalidEvent, name)
			}
			return ""
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			err = fmt.Errorf("%w: %q must be a string", ErrInvalidEvent, name)
			return ""
		}
		if required && s == "" {
			err = fmt.Errorf("%w: %q must not be empty", ErrInvalidEvent, name)
			return ""
		}
		if len(s) > MaxAttributeBytes {
			err = fmt.Errorf("%w: %q is longer than %d bytes", ErrInvalidEvent, name, MaxAttributeBytes)
			return ""
		}
		return s
	}
	ev.SpecVersion = str("specversion", true)
	ev.ID = str("id", true)
	ev.Source = str("source", true)
	ev.Type = str("type", true)
	ev.Subject = str("subject", false)
	timeText := str("time", false)
	ev.DataContentType = str("datacontenttype", false)
	ev.DataSchema = str("dataschema", false)
	dataBase64 := str("data_base64", false)
	if err != nil {
		return Event{}, err
	}
	if ev.SpecVersion != SpecVersion {
		return Event{}, fmt.Errorf("%w: specversion %q is not supported (want %q)", ErrInvalidEvent, ev.SpecVersion, SpecVersion)
	}
	if timeText != "" {
		t, perr := time.Parse(time.RFC3339Nano, timeText)
		if perr != nil {
			return Event{}, fmt.Errorf("%w: \"time\" %q is not an RFC 3339 timestamp", ErrInvalidEvent, timeText)
		}
		ev.Time = t
	}
	if data, ok := attrs["data"]; ok {
		delete(attrs, "data")
		if string(data) != "null" {
			ev.Data = data
		}
	}
	if dataBase64 != "" {
		if ev.Data != nil {
			return Event{}, fmt.Errorf("%w: \"data\" and \"data_base64\" are mutually exclusive", ErrInvalidEvent)
		}
		b, derr := base64.StdEncoding.DecodeString(dataBase64)
		if derr != nil {
			return Event{}, fmt.Errorf("%w: \"data_base64\" is not valid base64", ErrInvalidEvent)
		}
		ev.DataBase64 = b
	}
	for name, v := range attrs {
		if string(v) == "null" {
			continue // CloudEvents: a null attribute is an absent one
		}
		if !extensionName.MatchString(name) {
			return Event{}, fmt.Errorf("%w: attribute name %q must be lower-case letters and digits", ErrInvalidEvent, name)
		}
		switch v[0] {
		case '{', '[':
			return Event{}, fmt.Errorf("%w: extension %q must be a string, number or boolean", ErrInvalidEvent, name)
		}
		if ev.Extensions == nil {
			ev.Extensions = make(map[string]json.RawMessage, len(attrs))
		}
		ev.Extensions[name] = v
	}
	return ev, nil
}
