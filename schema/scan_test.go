package schema

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"
)

// referenceMembers and referenceElements are what the scanners replace:
// encoding/json's own decoding. The fuzz target below holds the scanners to
// them on any input.
func referenceMembers(raw []byte) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

func referenceElements(raw []byte) ([]json.RawMessage, bool) {
	var a []json.RawMessage
	if json.Unmarshal(raw, &a) != nil || a == nil {
		return nil, false
	}
	return a, true
}

func FuzzScannersAgreeWithEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"b":"x","c":{"d":[1,2,{"e":"}"}]},"f":null}`,
		`{ "id" : "\"quoted\\\\" , "a":true , "a" : false }`,
		`[{"x":"]"},[],"s",1.5e3,null, {} ]`,
		`{"\u0069d":"1","k":"\ud83d\ude00"}`,
		"[\n]", `{}`, `[1,2] `, ` {"a":[{"b":"\\"}]} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) || !utf8.Valid(raw) {
			return
		}
		trimmed := bytes.TrimSpace(raw)
		if want, ok := referenceMembers(raw); ok && trimmed[0] == '{' {
			if got := lastWins(trimmed); !reflect.DeepEqual(got, normalize(want)) {
				t.Fatalf("objectScanner(%q) = %q, want %q", raw, got, want)
			}
		}
		if want, ok := referenceElements(raw); ok && trimmed[0] == '[' {
			got, _ := arrayElements(trimmed, 0)
			if len(got) != len(want) {
				t.Fatalf("arrayElements(%q) = %q, want %q", raw, got, want)
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("arrayElements(%q)[%d] = %q, want %q", raw, i, got[i], want[i])
				}
			}
		}
	})
}

// lastWins is the members objectScanner finds in the object b, as
// encoding/json's map would hold them.
func lastWins(b []byte) map[string]string {
	out := map[string]string{}
	s := newObjectScanner(b)
	for name, value, ok := s.next(); ok; name, value, ok = s.next() {
		out[string(name)] = string(value)
	}
	return out
}

// normalize makes empty and nil maps compare equal.
func normalize(m map[string]json.RawMessage) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}
