package schema

import (
	"bytes"
	"encoding/json"
)

// The scanners below walk JSON text that validJSON (json.Valid's equal, see
// valid.go) has accepted, so they need not check its grammar: they only find
// where values end. They replace encoding/json's reflection for the two
// shapes ingest decodes on every request — an array of events and an event
// object — which made decoding most of the ingest's CPU time (each value
// was validated and decoded several times over).

// skipSpace returns the index of the first non-space byte at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns the index just past the string literal starting at i.
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++ // whatever is escaped, it does not end the string
		case '"':
			return i + 1
		}
	}
	return i
}

// valueEnd returns the index just past the value starting at i.
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return i
	default: // a number, true, false or null
		for ; i < len(b); i++ {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return i
			}
		}
		return i
	}
}

// arrayElements cuts the valid JSON array b into its elements, at most max
// of them (0: no bound); ok is false when there are more.
func arrayElements(b []byte, max int) (elems []json.RawMessage, ok bool) {
	i := skipSpace(b, skipSpace(b, 0)+1) // past '['
	for i < len(b) && b[i] != ']' {
		if max > 0 && len(elems) == max {
			return nil, false
		}
		end := valueEnd(b, i)
		elems = append(elems, b[i:end])
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return elems, true
}

// objectScanner walks the members of a valid JSON object, in document
// order, one at a time: nothing is gathered, so an object of a hundred
// thousand members costs its scan and no more.
type objectScanner struct {
	b []byte
	i int // at the next member's name, or at the closing brace
}

// newObjectScanner starts a walk of the valid JSON object b.
func newObjectScanner(b []byte) objectScanner {
	return objectScanner{b: b, i: skipSpace(b, skipSpace(b, 0)+1)} // past '{'
}

// next returns the next member's name (unescaped) and value; ok is false
// past the last.
func (s *objectScanner) next() (name []byte, value json.RawMessage, ok bool) {
	b, i := s.b, s.i
	if i >= len(b) || b[i] == '}' {
		return nil, nil, false
	}
	end := stringEnd(b, i)
	name = b[i+1 : end-1]
	if bytes.IndexByte(name, '\\') >= 0 {
		name = []byte(unquote(b[i:end]))
	}
	i = skipSpace(b, skipSpace(b, end)+1) // past ':'
	vend := valueEnd(b, i)
	value = b[i:vend]
	i = skipSpace(b, vend)
	if i < len(b) && b[i] == ',' {
		i = skipSpace(b, i+1)
	}
	s.i = i
	return name, value, true
}

// trimSpace trims the whitespace JSON allows around a value: space, tab, CR
// and LF. bytes.TrimSpace trims more (\v, \f, U+0085, U+00A0, …), which
// would make "\v{…}" an event though it is not JSON.
func trimSpace(b []byte) []byte {
	i, j := skipSpace(b, 0), len(b)
	for j > i && (b[j-1] == ' ' || b[j-1] == '\t' || b[j-1] == '\r' || b[j-1] == '\n') {
		j--
	}
	return b[i:j]
}

// unquote is the value of a valid string literal; most hold no escape and
// are their own bytes.
func unquote(lit []byte) string {
	if string(lit) == `"`+SpecVersion+`"` { // in every event: no copy needed
		return SpecVersion
	}
	if bytes.IndexByte(lit, '\\') < 0 {
		return string(lit[1 : len(lit)-1])
	}
	var s string
	_ = json.Unmarshal(lit, &s) // valid JSON: it cannot fail
	return s
}
