package schema

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecodeEvent checks that the decoder never panics, that it accepts only
// JSON objects, and that what it accepts keeps its required attributes.
func FuzzDecodeEvent(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err == nil {
			f.Add(raw)
		}
	}
	f.Add([]byte(`{"specversion":"1.0","id":"\u0000","source":"s","type":"t","data":null}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := DecodeEvent(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("error %v does not wrap ErrInvalidEvent", err)
			}
			return
		}
		if !json.Valid(raw) {
			t.Fatalf("accepted invalid JSON %q", raw)
		}
		if ev.SpecVersion != SpecVersion || ev.ID == "" || ev.Source == "" || ev.Type == "" {
			t.Fatalf("accepted an event missing required attributes: %+v", ev)
		}
		if ev.PartitionKey() == "" {
			t.Fatal("empty partition key")
		}
	})
}

// FuzzDecodeAgreesWithEncodingJSON holds DecodeEvent to a reference built
// on encoding/json alone, from the rules as CloudEvents and the README
// state them: for any body the reference can judge, the two agree on
// accepting it, and an accepted event's stored bytes are JSON that
// encoding/json decodes to the attribute values DecodeEvent returned.
//
//	go test -run '^$' -fuzz FuzzDecodeAgreesWithEncodingJSON -fuzztime 60s ./schema/
func FuzzDecodeAgreesWithEncodingJSON(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
		// Each event of a batch, alone.
		var batch []json.RawMessage
		if json.Unmarshal(raw, &batch) == nil {
			for _, ev := range batch {
				f.Add([]byte(ev))
			}
		}
	}
	for _, s := range []string{
		event(`,"id":"2"`), event(`,"\u0069d":"2"`), event(`,"ext":null,"ext":1`), event(`,"Bad":null`),
		event(`,"count":2147483648`), event(`,"count":-2147483648`), event(`,"count":1.5`), event(`,"flag":true`),
		event(`,"time":"2025-05-09T4:07:00,5+24:00"`), event(`,"time":"2016-12-31T23:59:60Z"`), event(`,"time":"2025-05-09t14:07:00.25-03:30"`),
		event(`,"data":{"a":1,"a":2}`), event(`,"data":{"a":{"b":1},"b":[1e5,-0.5E-3]}`), event(`,"data":[1e200000]`),
		event(`,"data":` + strings.Repeat("[", maxDataDepth+1) + strings.Repeat("]", maxDataDepth+1)),
		event(`,"data":"x","data_base64":"AA=="`), event(`,"data_base64":"AA=="`), event(`,"data":null,"data_base64":""`),
		event(`,"subject":"a\u0007b"`), event(`,"data":"\u0000"`), "\v" + event(""), " \t\r\n" + event("") + "\n",
		`{"specversion":"1.0","id":"","source":"s","type":"t"}`, `{"specversion":"1.0","id":"1","source":"s","type":"t"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ref := judge(raw)
		ev, err := DecodeEvent(raw)
		if err != nil && !errors.Is(err, ErrInvalidEvent) {
			t.Fatalf("error %v does not wrap ErrInvalidEvent", err)
		}
		// The batch path validates the body whole and each event with
		// valid set: for one JSON value, it must decide as DecodeEvent does.
		if json.Valid(raw) {
			_, faults, berr := DecodeRequest(MediaTypeBatch, append(append([]byte("["), raw...), ']'), 0)
			if batchOK := berr == nil && len(faults) == 0; batchOK != (err == nil) {
				t.Fatalf("DecodeEvent says %v, but in a batch: %v %v\n%q", err, berr, faults, raw)
			}
		}
		if !ref.judged {
			return
		}
		switch {
		case ref.ok && err != nil:
			t.Fatalf("refused %q: %v; encoding/json sees nothing wrong", raw, err)
		case !ref.ok && err == nil:
			t.Fatalf("accepted %q, which the reference refuses: %s", raw, ref.why)
		case err != nil:
			return
		}
		checkStoredAsDecoded(t, raw, ev, ref)
	})
}

// checkStoredAsDecoded checks that ev, accepted, holds what encoding/json
// reads in its stored bytes.
func checkStoredAsDecoded(t *testing.T, raw []byte, ev Event, ref reference) {
	t.Helper()
	if !json.Valid(ev.Raw) {
		t.Fatalf("stored bytes are not JSON: %q", ev.Raw)
	}
	stored, _, _ := topMembers(ev.Raw)
	if !reflect.DeepEqual(decodeAll(stored), decodeAll(ref.members)) {
		t.Fatalf("stored %q reads otherwise than %q", ev.Raw, raw)
	}
	for name, got := range map[string]string{"specversion": ev.SpecVersion, "id": ev.ID, "source": ev.Source, "type": ev.Type,
		"subject": ev.Subject, "datacontenttype": ev.DataContentType, "dataschema": ev.DataSchema} {
		if want := ref.strings[name]; got != want {
			t.Fatalf("%s = %q, encoding/json reads %q in %q", name, got, want, raw)
		}
	}
	if !ev.Time.Equal(ref.time) {
		t.Fatalf("time = %v, encoding/json and time.Parse read %v in %q", ev.Time, ref.time, raw)
	}
	if data, ok := ref.members["data"]; ok && string(data) != "null" {
		if !bytes.Equal(ev.Data, data) || !reflect.DeepEqual(decodeNumbers(ev.Data), decodeNumbers(data)) {
			t.Fatalf("data = %q, encoding/json reads %q", ev.Data, data)
		}
	} else if ev.Data != nil {
		t.Fatalf("data = %q where encoding/json reads none in %q", ev.Data, raw)
	}
	if !bytes.Equal(ev.DataBase64, ref.dataBase64) {
		t.Fatalf("data_base64 = %q, encoding/json and base64 read %q", ev.DataBase64, ref.dataBase64)
	}
	if len(ev.Extensions) != len(ref.extensions) {
		t.Fatalf("extensions %q, encoding/json reads %q", ev.Extensions, ref.extensions)
	}
	for name, v := range ref.extensions {
		if !bytes.Equal(ev.Extensions[name], v) {
			t.Fatalf("extension %q = %q, encoding/json reads %q", name, ev.Extensions[name], v)
		}
	}
}

// reference is what encoding/json alone makes of an event: whether it is
// acceptable, where it can judge, and if so the attribute values.
type reference struct {
	judged, ok bool
	why        string // what is wrong, when not ok
	members    map[string]json.RawMessage
	strings    map[string]string
	time       time.Time
	dataBase64 []byte
	extensions map[string]json.RawMessage
}

// The reference's rules, as patterns.
var (
	// A \u escape of a UTF-16 surrogate, or text that looks like one:
	// encoding/json turns a lone one into U+FFFD, hiding it.
	surrogateEscape = regexp.MustCompile(`\\u[dD][89a-fA-F]`)
	extensionRule   = regexp.MustCompile(`^[a-z0-9]{1,64}$`)
	rfc3339Grammar  = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt]([0-9]{2}):[0-9]{2}:([0-9]{2})(\.[0-9]+)?([Zz]|[+-]([0-9]{2}):([0-9]{2}))$`)
	// A number small enough that PostgreSQL's numeric surely holds it.
	smallNumber = regexp.MustCompile(`^-?[0-9]{1,300}(\.[0-9]{1,300})?([eE][+-]?0*[0-9]{1,3})?$`)
)

// judge is the reference decision on raw.
func judge(raw []byte) reference {
	refuse := func(why string) reference { return reference{judged: true, why: why} }
	if surrogateEscape.Match(raw) {
		return reference{} // the reference cannot see a lone surrogate
	}
	if !json.Valid(raw) {
		return refuse("not JSON")
	}
	if !utf8.Valid(raw) {
		return refuse("not UTF-8: every string of an event is checked, and it can hold no other")
	}
	members, dup, ok := topMembers(raw)
	switch {
	case !ok:
		return refuse("not an object")
	case dup != "":
		return refuse("member " + dup + " twice")
	}
	ref := reference{judged: true, ok: true, members: members, strings: map[string]string{}}
	spec := map[string]bool{"data": true}
	for _, a := range []struct {
		name     string
		required bool
	}{{"specversion", true}, {"id", true}, {"source", true}, {"type", true}, {"subject", false}, {"time", false},
		{"datacontenttype", false}, {"dataschema", false}, {"data_base64", false}} {
		spec[a.name] = true
		v, present := members[a.name]
		if !present || string(v) == "null" {
			if a.required {
				return refuse(a.name + " missing")
			}
			continue
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			return refuse(a.name + " not a string")
		}
		switch {
		case a.required && s == "":
			return refuse(a.name + " empty")
		case len(s) > MaxAttributeBytes && a.name != "data_base64":
			return refuse(a.name + " too long")
		case hasControl(s):
			return refuse(a.name + " holds a control character")
		}
		ref.strings[a.name] = s
	}
	if ref.strings["specversion"] != "1.0" {
		return refuse("specversion not 1.0")
	}
	if s := ref.strings["time"]; s != "" {
		m := rfc3339Grammar.FindStringSubmatch(s)
		switch {
		case m == nil:
			return refuse("time not RFC 3339's grammar")
		case strings.ContainsAny(s, "tz") || m[2] == "60":
			return reference{} // time.Parse takes neither
		case m[5] != "" && (m[5] > "23" || m[6] > "59"):
			return refuse("time offset out of range")
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return refuse("time: " + err.Error())
		}
		ref.time = t
	}
	if s := ref.strings["data_base64"]; s != "" {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return refuse("data_base64 not base64")
		}
		ref.dataBase64 = b
	}
	if data, ok := members["data"]; ok && string(data) != "null" {
		if ref.dataBase64 != nil {
			return refuse("data and data_base64")
		}
		if r := judgeData(data); !r.judged || !r.ok {
			return r
		}
	}
	for name, v := range members {
		if spec[name] {
			continue
		}
		if !extensionRule.MatchString(name) {
			return refuse("extension name " + name)
		}
		switch v[0] {
		case 'n':
			continue
		case '{', '[':
			return refuse("extension " + name + " not a scalar")
		case '"':
			var s string
			_ = json.Unmarshal(v, &s)
			if hasControl(s) {
				return refuse("extension " + name + " holds a control character")
			}
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			if _, err := strconv.ParseInt(string(v), 10, 32); err != nil || strings.HasPrefix(string(v), "+") {
				return refuse("extension " + name + " not an Integer")
			}
		}
		if ref.extensions == nil {
			ref.extensions = map[string]json.RawMessage{}
		}
		ref.extensions[name] = v
	}
	return ref
}

// judgeData is the reference decision on data, by encoding/json's tokens:
// no member name twice in one object, no NUL, nesting at most
// maxDataDepth, and numbers PostgreSQL's numeric holds (judged for the
// ones surely small enough).
func judgeData(data []byte) reference {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type object struct {
		names   map[string]bool
		nameNow bool // the next string token is a name
	}
	var open []*object // nil for an array
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return reference{judged: true, ok: true}
		}
		if err != nil {
			return reference{judged: true, why: "data: " + err.Error()}
		}
		var top *object
		if len(open) > 0 {
			top = open[len(open)-1]
		}
		isName := top != nil && top.nameNow
		if top != nil {
			top.nameNow = !top.nameNow
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{', '[':
				if len(open) == maxDataDepth {
					return reference{judged: true, why: "data too deep"}
				}
				var o *object
				if tok == '{' {
					o = &object{names: map[string]bool{}, nameNow: true}
				}
				open = append(open, o)
			default:
				open = open[:len(open)-1]
				if len(open) > 0 && open[len(open)-1] != nil {
					open[len(open)-1].nameNow = true // the container was a value
				}
			}
		case string:
			if strings.Contains(tok, "\x00") {
				return reference{judged: true, why: "data holds NUL"}
			}
			if isName {
				if top.names[tok] {
					return reference{judged: true, why: "data name " + tok + " twice"}
				}
				top.names[tok] = true
			}
		case json.Number:
			if !smallNumber.MatchString(string(tok)) {
				return reference{} // the reference does not compute PostgreSQL's bounds
			}
		}
	}
}

// topMembers is the members of the JSON object raw, by encoding/json's
// tokens; dup names a member given twice; ok is false when raw is no
// object.
func topMembers(raw []byte) (members map[string]json.RawMessage, dup string, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, "", false
	}
	members = map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, "", false
		}
		name := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, "", false
		}
		if _, seen := members[name]; seen && dup == "" {
			dup = name
		}
		members[name] = v
	}
	return members, dup, true
}

// hasControl reports a character CloudEvents forbids in a String.
func hasControl(s string) bool {
	for _, r := range s {
		if r <= 0x1F || (r >= 0x7F && r <= 0x9F) {
			return true
		}
	}
	return false
}

func decodeNumbers(raw []byte) any {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	_ = dec.Decode(&v)
	return v
}

func decodeAll(members map[string]json.RawMessage) map[string]any {
	out := map[string]any{}
	for name, v := range members {
		out[name] = decodeNumbers(v)
	}
	return out
}
