package schema

import (
	"encoding/binary"
	"math/bits"
)

// validJSON is json.Valid, to the byte: it accepts exactly the text
// encoding/json's scanner accepts. That scanner calls a function through a
// pointer for every byte, which made it the largest single cost of decoding
// an event, in ingest (once per body) and in the applier (once per record).
// validJSON does the same checks in a plain loop, and skips the bulk of a
// string eight bytes at a time.
//
// What "exactly" means, since json.Valid is the reference and the fuzz test
// FuzzValidJSONAgreesWithEncodingJSON holds the two together:
//   - whitespace is space, tab, CR and LF only, before and after the value;
//     empty text, or whitespace alone, is not JSON;
//   - any value may be the top one, not only an object or an array;
//   - strings refuse bytes below 0x20 and any escape but \" \\ \/ \b \f \n
//     \r \t and \u with four hex digits; they do not check UTF-8 (json.Valid
//     lets invalid UTF-8 and lone surrogate escapes through: checkJSONText
//     refuses them where it matters);
//   - arrays and objects nest at most maxNestingDepth deep.
func validJSON(b []byte) bool {
	// Events nest a handful of levels, so a stack of 256 (32 bytes to zero)
	// answers nearly every call; only deeper text pays for the full stack,
	// and a second scan, rather than every call zeroing 1.2 KiB.
	var kinds [4]uint64
	ok, deeper := validate(b, kinds[:])
	if deeper {
		return validDeep(b)
	}
	return ok
}

// maxNestingDepth is encoding/json's bound on nested arrays and objects: it
// accepts 10000 levels and refuses text that opens a 10001st.
const maxNestingDepth = 10000

// validDeep is validJSON with room for maxNestingDepth levels. It is a
// function of its own so that the zeroing of its stack happens only here.
//
//go:noinline
func validDeep(b []byte) bool {
	var kinds [(maxNestingDepth + 63) / 64]uint64
	ok, _ := validate(b, kinds[:])
	return ok
}

// validate does validJSON's work with kinds as the stack of open
// containers, one bit a level (set for an object, clear for an array).
// deeper reports that b opens more levels than kinds holds (and no more
// than maxNestingDepth), so that ok says nothing.
func validate(b []byte, kinds []uint64) (ok, deeper bool) {
	n := len(b)
	depth := 0 // containers open at i
	i := 0
	for {
		// A value starts at i, after optional whitespace.
		i = skipSpace(b, i)
		if i >= n {
			return false, false
		}
		switch c := b[i]; c {
		case '{', '[':
			// encoding/json refuses the push past its bound, even of a
			// container that would close at once.
			if depth == maxNestingDepth {
				return false, false
			}
			if depth == 64*len(kinds) {
				return false, true
			}
			w, bit := depth>>6, uint64(1)<<(depth&63)
			depth++
			i = skipSpace(b, i+1)
			if c == '[' {
				kinds[w] &^= bit
				if i < n && b[i] == ']' {
					i++
					depth--
					break // [] is a whole value
				}
				continue // to the first element
			}
			kinds[w] |= bit
			if i < n && b[i] == '}' {
				i++
				depth--
				break // {} is a whole value
			}
			if i = memberName(b, i); i < 0 {
				return false, false
			}
			continue // to the first member's value
		case '"':
			if i = validStringEnd(b, i+1); i < 0 {
				return false, false
			}
		case 't':
			if i+4 > n || string(b[i:i+4]) != "true" {
				return false, false
			}
			i += 4
		case 'f':
			if i+5 > n || string(b[i:i+5]) != "false" {
				return false, false
			}
			i += 5
		case 'n':
			if i+4 > n || string(b[i:i+4]) != "null" {
				return false, false
			}
			i += 4
		default:
			if i = numberEnd(b, i); i < 0 {
				return false, false
			}
		}
		// A value ends at i. What follows closes the containers it
		// completes, then separates it from the next value, or is the end.
		for {
			i = skipSpace(b, i)
			if depth == 0 {
				return i == n, false
			}
			if i >= n {
				return false, false
			}
			top := depth - 1
			object := kinds[top>>6]&(uint64(1)<<(top&63)) != 0
			c := b[i]
			if c == ',' {
				i++
				if object {
					if i = memberName(b, skipSpace(b, i)); i < 0 {
						return false, false
					}
				}
				break // to the next value
			}
			if (object && c == '}') || (!object && c == ']') {
				i++
				depth--
				continue
			}
			return false, false
		}
	}
}

// memberName checks the name of an object member and its colon, from i
// (at the name's opening quote), and returns the index past the colon, or
// -1 when there is no name and colon there.
func memberName(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = validStringEnd(b, i+1); i < 0 {
		return -1
	}
	if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
		return -1
	}
	return i + 1
}

// Eight copies of a byte, for the SWAR tests of validStringEnd.
const (
	swarOnes  = 0x0101010101010101
	swarHighs = 0x8080808080808080
)

// validStringEnd checks the body of a string literal from i (just past its
// opening quote) and returns the index past its closing quote, or -1 when
// the literal is not valid. Unlike stringEnd, it checks the grammar:
// stringEnd works over text already known to be valid.
func validStringEnd(b []byte, i int) int {
	n := len(b)
	for {
		// Skip eight bytes at a time while none of them is a quote, a
		// backslash or a control byte: strings are most of an event's
		// bytes, and most of a string's bytes are none of these. The lowest
		// byte the test flags is always a true one (only a borrow out of a
		// true one can flag a false one, and borrows carry upward). One
		// "&^ w" serves the three tests: neither '"' nor '\\' has its high
		// bit set, so the XORs leave the high bits of w as they were.
		for i+8 <= n {
			w := binary.LittleEndian.Uint64(b[i:])
			q, bs := w^(swarOnes*'"'), w^(swarOnes*'\\')
			special := ((w - swarOnes*0x20) | (q - swarOnes) | (bs - swarOnes)) &^ w & swarHighs
			if special != 0 {
				i += bits.TrailingZeros64(special) >> 3
				break
			}
			i += 8
		}
		for i < n && plainStringByte[b[i]] {
			i++
		}
		if i >= n {
			return -1
		}
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			if i+1 >= n {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > n || !hexDigit[b[i+2]] || !hexDigit[b[i+3]] || !hexDigit[b[i+4]] || !hexDigit[b[i+5]] {
					return -1
				}
				i += 6
			default:
				return -1
			}
		default: // a control byte
			return -1
		}
	}
}

// numberEnd checks a number from i and returns the index past it, or -1
// when there is none. Past the number it looks no further: whatever
// follows ("01", "1x") is the caller's to refuse, as it refuses any byte
// that cannot follow a value.
func numberEnd(b []byte, i int) int {
	n := len(b)
	if b[i] == '-' {
		i++
	}
	if i >= n {
		return -1
	}
	switch c := b[i]; {
	case c == '0': // no digit may follow a leading zero: the caller sees it
		i++
	case c >= '1' && c <= '9':
		i++
		for i < n && isDigit(b[i]) {
			i++
		}
	default:
		return -1
	}
	if i < n && b[i] == '.' {
		if i++; i >= n || !isDigit(b[i]) {
			return -1
		}
		for i < n && isDigit(b[i]) {
			i++
		}
	}
	if i < n && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < n && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= n || !isDigit(b[i]) {
			return -1
		}
		for i < n && isDigit(b[i]) {
			i++
		}
	}
	return i
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// plainStringByte and hexDigit are the byte classes of the string grammar,
// as tables: one load and no branch chain per byte.
var plainStringByte, hexDigit [256]bool

func init() {
	for c := 0x20; c < 256; c++ {
		plainStringByte[c] = c != '"' && c != '\\'
	}
	for _, c := range []byte("0123456789abcdefABCDEF") {
		hexDigit[c] = true
	}
}
