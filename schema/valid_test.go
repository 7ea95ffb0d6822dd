package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// validEdges are the inputs where a hand-written JSON validator is most
// likely to part from encoding/json: the table test checks each against
// json.Valid, and they seed the fuzz test.
func validEdges() []string {
	nest := func(depth int, open, close string) string {
		return strings.Repeat(open, depth) + strings.Repeat(close, depth)
	}
	edges := []string{
		// whitespace and the top level
		"", " ", "\t\r\n ", "\v1", "\f1", "\u00a01", "\ufeff{}", "1\x00", "\x00",
		"1", " 1 ", "\"\"", "null", "true", "false", "{}", "[]", " {} ", "\n[]\t",
		"{} {}", "[] x", "1 2", "{}]", "[]]", "{}}", "nul", "nulll", "tru", "truex",
		"True", "NULL", "fals", "false1", "[true,false,null]", "[nul]", "[tru]",
		// numbers
		"0", "-0", "-", "--1", "+1", "01", "-01", "00", "1.", "1.e5", ".5", "-.5",
		"1e", "1E", "1e+", "1e-", "1e5", "1E+5", "1e-05", "1.5e3", "0.0", "0e0",
		"-0.0e-0", "1ee5", "1e5.5", "1.5.5", "0x10", "1_000", "Infinity", "NaN",
		"-Infinity", "123456789012345678901234567890", "[1,]", "[01]", "[-]",
		"[1.]", "[1e]", "{\"a\":1.}", "{\"a\":-}", "[0,1,-1,1.0,1e1]", "1 ",
		"[1 2]", "[1,,2]", "[,1]", "[1}", "{\"a\":1]",
		// strings
		`"`, `"abc`, `"\"`, `"\\"`, `"\/"`, `"\b\f\n\r\t"`, `"\a"`, `"\x41"`,
		`"\'"`, `"\0"`, `"\u"`, `"\u0"`, `"\u00"`, `"\u004"`, `"\u0041"`,
		`"\u00zz"`, `"\uD800"`, `"\uDC00"`, `"\uD83D\uDE00"`, `"\uDE00\uD83D"`,
		`"\ud800x"`, `"\u0000"`, `"\UABCD"`, `"\uABCDEF"`, `"\uabcd"`, `"\\u00"`,
		"\"\x00\"", "\"\x1f\"", "\"\x20\"", "\"\x7f\"", "\"\t\"", "\"\n\"",
		"\"\xff\"", "\"\xc3\"", "\"\xc3\x28\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
		"\"\xe2\x82\xac\"", "\"é\"", "\xff", "[\xff]", "{\"\xff\":\"\xfe\"}",
		`"12345678"`, `"1234567"`, `"123456789"`, `"1234567\"`, `"12345678\"`,
		"\"1234567\x01\"", "\"12345678\x1f9\"", `"abcdefgh\"ijklmnop"`,
		`"abcdefghijklmno\\"`, `"abcdefghijklmno\\\"`, `"\\\\\\\\\\\\\\\\\\"`,
		// objects
		`{"a"}`, `{"a":}`, `{"a" 1}`, `{"a":1,}`, `{,}`, `{"a":1 "b":2}`,
		`{1:2}`, `{a:1}`, `{'a':1}`, `{"a":1,"a":2}`, `{"":""}`, `{ "a" : [ ] , "b" : { } }`,
		`{"a":{"b":{"c":[{"d":null}]}}}`, `{"a":[}`, `{"a":{]}`, `[{]}`, `[{}]`,
		`{"a":1}}`, `{"a":1`, `{"a"`, `{"a":`, `{`, `[`, `}`, `]`, `:`, `,`,
		`{"a":1,"b"}`, `{"a":1,"b":}`, `{"a",1}`, `["a":1]`, `{"a":"b":"c"}`,
		// nesting: encoding/json accepts 10000 levels and refuses 10001
		nest(255, "[", "]"), nest(256, "[", "]"), nest(257, "[", "]"),
		nest(9999, "[", "]"), nest(10000, "[", "]"), nest(10001, "[", "]"),
		strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000),
		strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001),
		strings.Repeat("[", 10000) + "{}" + strings.Repeat("]", 10000),
		strings.Repeat("[", 10000) + "[]" + strings.Repeat("]", 10000),
		strings.Repeat("[", 9999) + "{}" + strings.Repeat("]", 9999),
		strings.Repeat("[", 20000), strings.Repeat("[", 300) + "1",
		strings.Repeat("[", 300) + strings.Repeat("]", 299) + "}",
		strings.Repeat(`[{"a":`, 200) + "1" + strings.Repeat("}]", 200),
		strings.Repeat(`[{"a":`, 200) + "1" + strings.Repeat("]}", 200),
		// trailing garbage after a whole value
		`{"a":1}x`, `{"a":1} ,`, `[1,2]]`, `"a""b"`, `1/`, `{}//`, `[]/**/`,
	}
	huge := strings.Repeat("x", 1<<20)
	edges = append(edges,
		`"`+huge+`"`, `"`+huge, `"`+huge+"\x01\"", `"`+huge+`\u12"`,
		`["`+strings.Repeat(`\u00e9\n\"`, 10000)+`"]`,
	)
	return edges
}

func TestValidJSONMatchesEncodingJSONOnEdges(t *testing.T) {
	for _, s := range validEdges() {
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("validJSON(%.80q) (%d bytes) = %v, json.Valid says %v", s, len(s), got, want)
		}
	}
}

func TestValidJSONMatchesEncodingJSONOnSamples(t *testing.T) {
	files, _ := os.ReadDir("testdata")
	for _, f := range files {
		raw, err := os.ReadFile("testdata/" + f.Name())
		if err != nil {
			t.Fatal(err)
		}
		// Every prefix of a valid sample, to cover text cut anywhere.
		for i := 0; i <= len(raw); i++ {
			if got, want := validJSON(raw[:i]), json.Valid(raw[:i]); got != want {
				t.Errorf("%s[:%d]: validJSON = %v, json.Valid says %v", f.Name(), i, got, want)
			}
		}
	}
}

// The depth bound is where encoding/json's: a container is refused as it
// opens the 10001st level, wherever that happens.
func TestValidJSONDepthBound(t *testing.T) {
	for _, depth := range []int{1, 63, 64, 65, 255, 256, 257, 9999, 10000, 10001, 10064, 10065} {
		for _, c := range []struct{ open, close string }{{"[", "]"}, {`{"":`, "}"}} {
			inner := "0"
			if c.open == "[" {
				inner = "" // [[]] closes the innermost at once
			}
			s := []byte(strings.Repeat(c.open, depth) + inner + strings.Repeat(c.close, depth))
			if got, want := validJSON(s), depth <= maxNestingDepth; got != want || json.Valid(s) != want {
				t.Errorf("depth %d of %s: validJSON = %v, json.Valid = %v, want %v", depth, c.open, got, json.Valid(s), want)
			}
		}
	}
}

func TestValidJSONDoesNotAllocate(t *testing.T) {
	raw, _ := os.ReadFile("testdata/valid_full.json")
	deep := []byte(strings.Repeat("[", 5000) + strings.Repeat("]", 5000))
	for _, b := range [][]byte{raw, deep} {
		if n := testing.AllocsPerRun(100, func() { validJSON(b) }); n != 0 {
			t.Errorf("%d allocations a call on %d bytes", int(n), len(b))
		}
	}
}

// FuzzValidJSONAgreesWithEncodingJSON holds validJSON to json.Valid on any
// input: the decode paths swapped one for the other, so any disagreement
// is a change of what sluice accepts.
func FuzzValidJSONAgreesWithEncodingJSON(f *testing.F) {
	for _, s := range validEdges() {
		// The 1 MiB strings stay in the table test: as seeds they would
		// slow every exec the fuzzer derives from them. The deep nests
		// (50 KB at most) are seeds, and a long string stands in.
		if len(s) <= 64<<10 {
			f.Add([]byte(s))
		}
	}
	f.Add([]byte(`["` + strings.Repeat("abcdefg\n", 4<<10) + `"]`))
	files, _ := os.ReadDir("testdata")
	for _, file := range files {
		if raw, err := os.ReadFile("testdata/" + file.Name()); err == nil {
			f.Add(raw)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, want := validJSON(b), json.Valid(b)
		if got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", b, got, want)
		}
		// The same text inside an array and an object, so that whatever
		// the fuzzer finds at the top level is tried nested too.
		for _, w := range [][]byte{
			append(append([]byte("["), b...), ']'),
			append(append([]byte(`{"k":`), b...), '}'),
			append(append([]byte(`[0,`), b...), `,{}]`...),
		} {
			if got, want := validJSON(w), json.Valid(w); got != want {
				t.Fatalf("validJSON(%q) = %v, json.Valid says %v", w, got, want)
			}
		}
	})
}

// benchEvent is a typical event of about 250 bytes.
var benchEvent = []byte(`{"specversion":"1.0","id":"order-1042","source":"shop/checkout",` +
	`"type":"com.example.order.created","subject":"customer-77","time":"2025-05-09T14:07:00Z",` +
	`"datacontenttype":"application/json","data":{"amount":1299,"currency":"EUR","items":[{"sku":"A-1","qty":2}]}}`)

// benchBatch is a batch body of 1 MiB, of events like benchEvent.
func benchBatch() []byte {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := 0; buf.Len() < 1<<20-len(benchEvent)-2; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(benchEvent)
	}
	buf.WriteByte(']')
	return buf.Bytes()
}

func BenchmarkValidJSON(b *testing.B) {
	batch := benchBatch()
	for _, in := range []struct {
		name string
		body []byte
	}{{"event", benchEvent}, {"batch1MiB", batch}} {
		for _, v := range []struct {
			name  string
			valid func([]byte) bool
		}{{"validJSON", validJSON}, {"json.Valid", json.Valid}} {
			b.Run(in.name+"/"+v.name, func(b *testing.B) {
				if !v.valid(in.body) {
					b.Fatal("the input is not valid")
				}
				b.SetBytes(int64(len(in.body)))
				b.ReportAllocs()
				for b.Loop() {
					v.valid(in.body)
				}
			})
		}
	}
}

// names is an object of the members name0 … name(n-1), each of value v.
func names(n int, v string) string {
	members := make([]string, n)
	for i := range members {
		members[i] = fmt.Sprintf(`"name%d":%s`, i, v)
	}
	return "{" + strings.Join(members, ",") + "}"
}

func TestDataRefusesAMemberNamedTwiceInOneObject(t *testing.T) {
	big := names(3*smallObject, "1") // past the linear search, into a map
	cases := []struct {
		name, data string
		ok         bool
	}{
		{"a name given twice at the top of data is refused", `{"a":1,"a":2}`, false},
		{"a name given twice with equal values is refused", `{"a":1,"a":1}`, false},
		{"a name given twice in a nested object is refused", `{"x":{"a":1,"b":2,"a":3}}`, false},
		{"a name given twice in an object inside an array is refused", `[1,{"a":1,"a":null}]`, false},
		{"an escaped name is the name it stands for", `{"a":1,"\u0061":2}`, false},
		{"a name given twice after a nested object closes is refused", `{"a":{"b":1},"a":2}`, false},
		{"a name given twice in an object of many names is refused", big[:len(big)-1] + `,"name7":2}`, false},
		{"a name given twice at the end of an object of many names is refused", big[:len(big)-1] + `,"x":1,"x":2}`, false},
		{"one name in two sibling objects is fine", `[{"a":1},{"a":2}]`, true},
		{"one name at two levels is fine", `{"a":{"a":{"a":1}}}`, true},
		{"a nested object's names do not count in its parent", `{"a":{"b":1},"b":2}`, true},
		{"names that differ in case are two names", `{"a":1,"A":2}`, true},
		{"a name that is a string value elsewhere is fine", `{"a":"b","b":"a"}`, true},
		{"two objects of many names, one name each, are fine", `{"x":` + big + `,"y":` + big + `}`, true},
		{"a colon inside a string is no name", `{"a":"b:","c":"a\":"}`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeEvent([]byte(event(`,"data":` + c.data)))
			if c.ok {
				if err != nil {
					t.Fatalf("data %.80s: %v", c.data, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), `"data" has the member`) || !strings.Contains(err.Error(), "twice in one object") {
				t.Fatalf("data %.80s: err = %v, want the name given twice refused", c.data, err)
			}
		})
	}
}

func TestDataNumbersFitPostgreSQLNumeric(t *testing.T) {
	cases := []struct {
		name, number string
		ok           bool
	}{
		{"a plain number fits", `123.456`, true},
		{"minus zero fits", `-0`, true},
		{"an exponent with a sign fits", `1E+5`, true},
		{"the largest power of ten, 131072 digits before the point, fits", `1e131071`, true},
		{"a value just under 10^131072 fits", `9.999e131071`, true},
		{"a value written with a fraction whose first digit stands at 10^131071 fits", `0.1e131072`, true},
		{"131072 digits before the point fit", "1" + strings.Repeat("0", 131071), true},
		{"the smallest power of ten, 16383 digits after the point, fits", `1e-16383`, true},
		{"16383 digits after the point fit", "0." + strings.Repeat("0", 16382) + "1", true},
		{"zero at any positive exponent fits", `0e200000`, true},
		{"zero at the largest exponent PostgreSQL parses fits", `0e1073741823`, true},
		{"a negative number in range fits", `-5e100`, true},
		{"1e200000 is refused", `1e200000`, false},
		{"1e-200000 is refused", `1e-200000`, false},
		{"10^131072 is refused: 131073 digits before the point", `1e131072`, false},
		{"a negative 10^131072 is refused", `-1e131072`, false},
		{"ten times 10^131071 is refused", `10e131071`, false},
		{"131073 digits before the point are refused", "1" + strings.Repeat("0", 131072), false},
		{"10^-16384 is refused: 16384 digits after the point", `1e-16384`, false},
		{"16384 digits after the point are refused", "0." + strings.Repeat("0", 16383) + "1", false},
		{"a scale counts the digits as written: 1.0e-16383 has 16384", `1.0e-16383`, false},
		{"zero at an exponent past the scale is refused, as PostgreSQL refuses it", `0e-16384`, false},
		{"an exponent past (2^31-1)/2 is refused even on zero", `0e1073741824`, false},
		{"an exponent of many digits is refused", `1e99999999999999999999`, false},
		{"a negative exponent of many digits is refused", `1e-99999999999999999999`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeEvent([]byte(event(`,"data":{"n":[1,` + c.number + `]}`)))
			if c.ok {
				if err != nil {
					t.Fatalf("%.40s: %v", c.number, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), `"data" holds the number`) || !strings.Contains(err.Error(), "PostgreSQL's numeric") {
				t.Fatalf("%.40s: err = %v, want the number refused", c.number, err)
			}
		})
	}
}

func TestDataNestsAtMostMaxDataDepth(t *testing.T) {
	arrays := func(depth int) string { return strings.Repeat("[", depth) + strings.Repeat("]", depth) }
	objects := func(depth int) string {
		return strings.Repeat(`{"a":`, depth-1) + "{}" + strings.Repeat("}", depth-1)
	}
	mixed := func(depth int) string {
		return strings.Repeat(`[{"a":`, depth/2) + "1" + strings.Repeat("}]", depth/2)
	}
	cases := []struct {
		name, data string
		ok         bool
	}{
		{"arrays at the bound are accepted", arrays(maxDataDepth), true},
		{"arrays past the bound are refused", arrays(maxDataDepth + 1), false},
		{"objects at the bound are accepted", objects(maxDataDepth), true},
		{"objects past the bound are refused", objects(maxDataDepth + 1), false},
		{"arrays and objects at the bound are accepted", mixed(maxDataDepth), true},
		{"arrays and objects past the bound are refused", mixed(maxDataDepth + 2), false},
		{"many containers side by side are not nesting", "[" + strings.Repeat("[[]],", 10*maxDataDepth) + "[]]", true},
		{"nesting that encoding/json takes is still refused past the bound", arrays(maxNestingDepth - 1), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeEvent([]byte(event(`,"data":` + c.data)))
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), `"data" nests arrays and objects more than 512 deep`) {
				t.Fatalf("err = %v, want the depth refused", err)
			}
		})
	}
}
