package schema

import (
	"bytes"
	"encoding/binary"
	"fmt"
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

// checkData checks the "data" of an event, valid JSON that checkJSONText
// has passed, for what JSON allows but sluice refuses, in one pass: a
// member name given twice in one object (readers differ on which value
// they take: encoding/json and jsonb the last, others the first or an
// error, so the stored bytes would not mean one thing), a number that
// PostgreSQL's numeric cannot hold, and nesting deeper than maxDataDepth.
// What it accepts, the target stores as the client sent it.
func checkData(b []byte) error {
	// The name sets of a typical event's data fit here, on the stack.
	var (
		nameRoom  [32][]byte
		startRoom [8]int
		setRoom   [8]map[string]struct{}
	)
	objects := nameSets{names: nameRoom[:0], starts: startRoom[:0], sets: setRoom[:0]}
	depth := 0
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == '{' || c == '[':
			if depth++; depth > maxDataDepth {
				return errDataTooDeep
			}
			if c == '{' {
				objects = objects.open()
			}
			i++
		case c == '}':
			objects = objects.close()
			depth--
			i++
		case c == ']':
			depth--
			i++
		case c == '"':
			end := stringEnd(b, i)
			j := skipSpace(b, end)
			if j >= len(b) || b[j] != ':' {
				i = end // a string value
				continue
			}
			name := unquotedName(b[i:end])
			var fresh bool
			if objects, fresh = objects.add(name); !fresh {
				return fmt.Errorf("has the member %q twice in one object", name)
			}
			i = j + 1
		case c == '-' || isDigit(c):
			end := i + 1
			for end < len(b) && numberByte[b[end]] {
				end++
			}
			if !numericFits(b[i:end]) {
				return fmt.Errorf("holds the number %s, beyond PostgreSQL's numeric (%d digits before the point, %d after, as written)",
					excerpt(b[i:end]), maxNumericDigits, maxNumericScale)
			}
			i = end
		default: // space, comma, or a letter of true, false or null
			i++
		}
	}
	return nil
}

// maxDataDepth bounds how deep arrays and objects nest in data. The target
// stores data as jsonb, and PostgreSQL parses JSON recursively, checking
// its stack against max_stack_depth (2 MB by default): that takes some
// thousands of levels, fewer under a smaller setting or a deeper caller (a
// trigger, a function over the jsonb). An event the edge accepts and the
// target refuses is dead-lettered after its 202; 512 levels is far inside
// what PostgreSQL takes, and far beyond what real payloads nest.
const maxDataDepth = 512

var errDataTooDeep = fmt.Errorf("nests arrays and objects more than %d deep", maxDataDepth)

// The bounds of PostgreSQL's numeric, as which jsonb stores every number
// (numeric.c, set_var_from_str and make_result): the first base-10000
// digit's weight is an int16, so at most 131072 decimal digits before the
// point; the display scale (digits after the point, as written: 1.0e-2 has
// three) is at most 0x3FFF; and an exponent past (2³¹-1)/2 is refused
// outright, even on zero.
const (
	maxNumericDigits   = 131072
	maxNumericScale    = 16383
	maxNumericExponent = (1<<31 - 1) / 2
)

// numericFits reports whether PostgreSQL's numeric holds the number lit
// (valid JSON), by its bounds above: it computes where the first digit
// other than zero stands and how many digits follow the point once the
// exponent is applied, from the digits as written, so a number of any
// length costs one pass and no arithmetic on its value.
func numericFits(lit []byte) bool {
	i := 0
	if lit[0] == '-' {
		i++
	}
	start := i
	for i < len(lit) && isDigit(lit[i]) {
		i++
	}
	whole := lit[start:i] // "0" or no leading zero: JSON's grammar
	var frac []byte
	if i < len(lit) && lit[i] == '.' {
		i++
		start = i
		for i < len(lit) && isDigit(lit[i]) {
			i++
		}
		frac = lit[start:i]
	}
	exp := 0
	if i < len(lit) { // 'e' or 'E'
		i++
		neg := lit[i] == '-'
		if lit[i] == '+' || neg {
			i++
		}
		for ; i < len(lit); i++ {
			if exp = exp*10 + int(lit[i]-'0'); exp > maxNumericExponent {
				return false
			}
		}
		if neg {
			exp = -exp
		}
	}
	if len(frac)-exp > maxNumericScale {
		return false
	}
	// first is the power of ten of the first digit other than zero.
	var first int
	if whole[0] != '0' {
		first = len(whole) - 1 + exp
	} else {
		j := 0
		for j < len(frac) && frac[j] == '0' {
			j++
		}
		if j == len(frac) {
			return true // zero, at any exponent the scale allows
		}
		first = exp - (j + 1)
	}
	// Past the point, the scale bound is the tighter: first ≥ -scale.
	return first < maxNumericDigits
}

// numberByte are the bytes a number may hold past its first.
var numberByte = [256]bool{'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true,
	'7': true, '8': true, '9': true, '.': true, 'e': true, 'E': true, '+': true, '-': true}

// unquotedName is the name a member name literal (valid JSON) stands for:
// its own bytes unless it holds an escape, so that "a" and "\u0061" are
// one name.
func unquotedName(lit []byte) []byte {
	if bytes.IndexByte(lit, '\\') < 0 {
		return lit[1 : len(lit)-1]
	}
	return []byte(unquote(lit))
}

// nameSets are the member names of the objects open at one point of a
// walk, innermost last, to find a name given twice in one object. A small
// object's names are searched one by one; past smallObject names the
// object gets a map, so that each name costs the same whatever the size of
// its object, and the memory is proportional to the names.
type nameSets struct {
	names  [][]byte              // the names of the small open objects, in order
	starts []int                 // where each open object's names begin in names
	sets   []map[string]struct{} // each open object's map; nil while it is small
}

// smallObject is how many names an object holds before it gets a map.
const smallObject = 16

// The methods take and return nameSets by value, which lets the arrays
// checkData starts them on stay on its stack.

// open is s with an object opened, innermost.
func (s nameSets) open() nameSets {
	s.starts = append(s.starts, len(s.names))
	s.sets = append(s.sets, nil)
	return s
}

// close is s with the innermost object closed.
func (s nameSets) close() nameSets {
	top := len(s.starts) - 1
	s.names = s.names[:s.starts[top]]
	s.starts, s.sets = s.starts[:top], s.sets[:top]
	return s
}

// add is s with name added to the innermost open object; fresh is false
// when the object had it already.
func (s nameSets) add(name []byte) (_ nameSets, fresh bool) {
	top := len(s.starts) - 1
	if set := s.sets[top]; set != nil {
		if _, dup := set[string(name)]; dup {
			return s, false
		}
		set[string(name)] = struct{}{}
		return s, true
	}
	own := s.names[s.starts[top]:]
	for _, n := range own {
		if bytes.Equal(n, name) {
			return s, false
		}
	}
	if len(own) < smallObject {
		s.names = append(s.names, name)
		return s, true
	}
	set := make(map[string]struct{}, 4*smallObject)
	for _, n := range own {
		set[string(n)] = struct{}{}
	}
	set[string(name)] = struct{}{}
	s.sets[top] = set
	return s, true
}
