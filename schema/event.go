package schema

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
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

// DecodeEvent parses and validates one CloudEvent in JSON structured mode.
// Errors wrap ErrInvalidEvent and name the attribute at fault.
//
// The checks run in a fixed order, and the first fault is the one reported:
// a member named twice (which of its values a reader takes is up to the
// reader, so none is taken), the string attributes (required, then
// optional), the specversion, the time, data against data_base64, and last
// the extension attributes, in document order.
//
// Decoding is linear in the size of raw, whatever its shape: one scan
// validates it, one walks its members and files each under its attribute
// as it goes, and data is checked in one more (see checkData).
func DecodeEvent(raw []byte) (Event, error) {
	return decodeEvent(raw, false)
}

// decodeEvent is DecodeEvent; valid says raw is known to be valid JSON (an
// element of a batch the caller validated whole), which spares a scan.
func decodeEvent(raw []byte, valid bool) (Event, error) {
	raw = trimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' || (!valid && !validJSON(raw)) {
		return Event{}, fmt.Errorf("%w: not a JSON object", ErrInvalidEvent)
	}
	var attrs attributes
	ext, extErr, err := fileMembers(raw, &attrs)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Raw: json.RawMessage(raw), Extensions: ext}
	if err := takeRequiredAttributes(&attrs, &ev); err != nil {
		return Event{}, err
	}
	opt, err := takeOptionalAttributes(&attrs, &ev)
	if err != nil {
		return Event{}, err
	}
	if err := checkSpecVersion(ev.SpecVersion); err != nil {
		return Event{}, err
	}
	if ev.Time, err = parseTime(opt.time); err != nil {
		return Event{}, err
	}
	if err := takeData(attrs[attrData], opt.dataBase64, &ev); err != nil {
		return Event{}, err
	}
	if extErr != nil {
		return Event{}, extErr
	}
	return ev, nil
}

// The attributes the specification defines, as indexes of attributes.
const (
	attrSpecVersion = iota
	attrID
	attrSource
	attrType
	attrSubject
	attrTime
	attrDataContentType
	attrDataSchema
	attrData
	attrDataBase64
	numAttributes
)

// attributes holds the raw value of each attribute the specification
// defines, by index; nil when the event has no such member.
type attributes [numAttributes]json.RawMessage

// specAttribute is the index in attributes of the attribute called name,
// or -1 when the specification defines none by that name: an extension.
func specAttribute(name []byte) int {
	switch string(name) { // a switch on string(name) does not copy name
	case "specversion":
		return attrSpecVersion
	case "id":
		return attrID
	case "source":
		return attrSource
	case "type":
		return attrType
	case "subject":
		return attrSubject
	case "time":
		return attrTime
	case "datacontenttype":
		return attrDataContentType
	case "dataschema":
		return attrDataSchema
	case "data":
		return attrData
	case "data_base64":
		return attrDataBase64
	}
	return -1
}

// fileMembers files each member of the valid JSON object raw, in one pass:
// the attributes of the specification into attrs, the extension attributes
// into the returned map (nil when there are none; null ones are absent, as
// CloudEvents has it). It checks each extension as it goes, and returns the
// first fault in document order as extErr, for the caller to report after
// the faults of the specification's attributes.
//
// A name given twice is err, naming it, whatever the values (null
// included): readers differ on which value they take (the first, the last,
// or none), so the stored bytes would not mean one thing, and whichever
// copy the checks saw, the other would go unchecked. Names are compared
// unescaped, so "\u0069d" is "id".
func fileMembers(raw []byte, attrs *attributes) (ext map[string]json.RawMessage, extErr, err error) {
	nulls := false
	s := newObjectScanner(raw)
	for {
		name, v, ok := s.next()
		if !ok {
			break
		}
		if a := specAttribute(name); a >= 0 {
			if attrs[a] != nil {
				return nil, nil, errDuplicate(name)
			}
			attrs[a] = v
			continue
		}
		if ext == nil {
			ext = make(map[string]json.RawMessage)
		} else if _, dup := ext[string(name)]; dup {
			return nil, nil, errDuplicate(name)
		}
		ext[string(name)] = v // a null one too, to catch it given twice
		nulls = nulls || v[0] == 'n'
		if extErr == nil {
			extErr = checkExtension(name, v)
		}
	}
	if nulls {
		for name, v := range ext {
			if v[0] == 'n' {
				delete(ext, name)
			}
		}
	}
	if len(ext) == 0 {
		ext = nil
	}
	return ext, extErr, nil
}

func errDuplicate(name []byte) error {
	return fmt.Errorf("%w: member %q appears more than once", ErrInvalidEvent, name)
}

// takeString returns the value of the attribute a, which must be a JSON
// string of at most MaxAttributeBytes. An absent or null attribute is ""
// when optional, an error when required; a required one must not be empty
// either.
func takeString(attrs *attributes, a int, required bool) (string, error) {
	name, v := attributeNames[a], attrs[a]
	if v == nil || string(v) == "null" {
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
	if len(s) > MaxAttributeBytes && a != attrDataBase64 {
		return "", fmt.Errorf("%w: %q is longer than %d bytes", ErrInvalidEvent, name, MaxAttributeBytes)
	}
	if err := checkAttributeString(s); err != nil {
		return "", fmt.Errorf("%w: %q %v", ErrInvalidEvent, name, err)
	}
	return s, nil
}

// attributeNames are the names of the attributes, by index.
var attributeNames = [numAttributes]string{
	attrSpecVersion:     "specversion",
	attrID:              "id",
	attrSource:          "source",
	attrType:            "type",
	attrSubject:         "subject",
	attrTime:            "time",
	attrDataContentType: "datacontenttype",
	attrDataSchema:      "dataschema",
	attrData:            "data",
	attrDataBase64:      "data_base64",
}

// takeRequiredAttributes sets specversion, id, source and type on ev from
// attrs, each a non-empty string, and reports the first one at fault. The
// specversion's value is checked later, by checkSpecVersion.
func takeRequiredAttributes(attrs *attributes, ev *Event) error {
	return takeStrings(attrs, true, []indexedString{
		{attrSpecVersion, &ev.SpecVersion},
		{attrID, &ev.ID},
		{attrSource, &ev.Source},
		{attrType, &ev.Type},
	})
}

// indexedString is an attribute and where its value goes.
type indexedString struct {
	attr int
	dst  *string
}

// takeStrings takes each of fields from attrs in order, and reports the
// first one at fault.
func takeStrings(attrs *attributes, required bool, fields []indexedString) error {
	for _, f := range fields {
		s, err := takeString(attrs, f.attr, required)
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
// from attrs (and returns the text of time and data_base64), each a string
// when present, and reports the first one at fault.
func takeOptionalAttributes(attrs *attributes, ev *Event) (optionalText, error) {
	var opt optionalText
	err := takeStrings(attrs, false, []indexedString{
		{attrSubject, &ev.Subject},
		{attrTime, &opt.time},
		{attrDataContentType, &ev.DataContentType},
		{attrDataSchema, &ev.DataSchema},
		{attrDataBase64, &opt.dataBase64},
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

// takeData sets ev.Data from the "data" member's raw value (nil: absent;
// null is absent too), which must pass checkJSONText and checkData, and
// ev.DataBase64 from the decoded dataBase64 text, of which at most one may
// be present.
func takeData(data json.RawMessage, dataBase64 string, ev *Event) error {
	if data != nil {
		if err := checkJSONText(data); err != nil {
			return fmt.Errorf("%w: \"data\" %v", ErrInvalidEvent, err)
		}
		if err := checkData(data); err != nil {
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

// checkExtension checks the extension attribute name of value v: named
// by the CloudEvents rule (a null one too: a bad name is a bad member,
// whatever its value) and a string, a boolean or an Integer.
func checkExtension(name []byte, v json.RawMessage) error {
	if !isExtensionName(name) {
		return fmt.Errorf("%w: attribute name %q must be lower-case letters and digits (1 to %d)", ErrInvalidEvent, name, maxExtensionName)
	}
	switch v[0] {
	case 'n', 't', 'f': // null, true, false
		return nil
	case '{', '[':
		return fmt.Errorf("%w: extension %q must be a string, number or boolean", ErrInvalidEvent, name)
	case '"':
		if err := checkJSONText(v); err != nil {
			return fmt.Errorf("%w: extension %q %v", ErrInvalidEvent, name, err)
		}
		if err := checkAttributeString(unquote(v)); err != nil {
			return fmt.Errorf("%w: extension %q %v", ErrInvalidEvent, name, err)
		}
		return nil
	}
	if !isInteger(v) {
		return fmt.Errorf("%w: extension %q is the number %s, but a number attribute is a CloudEvents Integer: digits alone, from %d to %d",
			ErrInvalidEvent, name, excerpt(v), math.MinInt32, math.MaxInt32)
	}
	return nil
}

// maxExtensionName bounds the name of an extension attribute. The
// specification advises 20 characters at most; we accept up to 64 to be
// lenient with producers that stretch it.
const maxExtensionName = 64

// isExtensionName is the CloudEvents rule for attribute names: lower-case
// ASCII letters and digits.
func isExtensionName(name []byte) bool {
	if len(name) == 0 || len(name) > maxExtensionName {
		return false
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// isInteger reports whether the number v (valid JSON) is a CloudEvents
// Integer as the JSON format writes one: "only the integer component
// optionally prefixed with a minus sign" (no fraction, no exponent, even
// one that leaves a whole number), from -2³¹ to 2³¹-1.
func isInteger(v []byte) bool {
	digits := v
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 10 { // 2147483648 has ten digits
		return false
	}
	n := int64(0)
	for _, c := range digits {
		if !isDigit(c) {
			return false
		}
		n = n*10 + int64(c-'0')
	}
	if v[0] == '-' {
		n = -n
	}
	return n >= math.MinInt32 && n <= math.MaxInt32
}

// excerpt is at most the first 40 bytes of a value, for an error message:
// the value may be a megabyte long.
func excerpt(v []byte) string {
	const most = 40
	if len(v) <= most {
		return string(v)
	}
	return string(v[:most]) + "…"
}
