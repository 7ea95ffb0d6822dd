package schema

import (
	"bytes"
	"errors"
	"unicode/utf8"
)

// Faults that encoding/json lets through silently: it turns invalid UTF-8
// and lone UTF-16 surrogates into U+FFFD, so that ids "\xff" and "\xfe" of
// one source become the same id and an accepted event vanishes as a
// "duplicate"; and it keeps \u0000, which PostgreSQL can never store in
// text or jsonb, so that an event accepted with 202 is certain to be
// dead-lettered.
var (
	errInvalidUTF8   = errors.New("is not valid UTF-8")
	errLoneSurrogate = errors.New("holds a lone UTF-16 surrogate (\\ud800–\\udfff without its pair)")
	errNUL           = errors.New("holds \\u0000, which no target can store")
	errControl       = errors.New("holds a control character (U+0000–U+001F or U+007F–U+009F), which CloudEvents forbids in attribute strings")
)

// checkJSONText checks the raw text of one JSON value: valid UTF-8, and in
// its string literals no lone surrogate escape and no \u0000.
func checkJSONText(raw []byte) error {
	if !utf8.Valid(raw) {
		return errInvalidUTF8
	}
	if bytes.IndexByte(raw, '\\') < 0 { // no escape, so no \u escape: most values
		return nil
	}
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !inString {
			if c == '"' {
				inString = true
			}
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 >= len(raw) {
				return nil // not JSON: the decoder says so
			}
			if raw[i+1] != 'u' {
				i++ // a one-character escape
				continue
			}
			r, ok := hex4(raw, i+2)
			if !ok {
				return nil
			}
			switch {
			case r == 0:
				return errNUL
			case r >= 0xD800 && r <= 0xDBFF: // a high surrogate needs a low one next
				lo, ok := hex4(raw, i+8)
				if i+7 >= len(raw) || raw[i+6] != '\\' || raw[i+7] != 'u' || !ok || lo < 0xDC00 || lo > 0xDFFF {
					return errLoneSurrogate
				}
				i += 11
				continue
			case r >= 0xDC00 && r <= 0xDFFF:
				return errLoneSurrogate
			}
			i += 5
		}
	}
	return nil
}

// hex4 reads four hex digits at raw[at:].
func hex4(raw []byte, at int) (rune, bool) {
	if at+4 > len(raw) {
		return 0, false
	}
	var r rune
	for _, c := range raw[at : at+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			r |= rune(c-'A') + 10
		default:
			return 0, false
		}
	}
	return r, true
}

// checkAttributeString refuses the control characters CloudEvents forbids
// in a String attribute.
func checkAttributeString(s string) error {
	ascii := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c <= 0x1F || c == 0x7F:
			return errControl
		case c >= 0x80:
			ascii = false
		}
	}
	if ascii { // U+0080–U+009F are two bytes in UTF-8: none here
		return nil
	}
	for _, r := range s {
		if r <= 0x1F || (r >= 0x7F && r <= 0x9F) {
			return errControl
		}
	}
	return nil
}
