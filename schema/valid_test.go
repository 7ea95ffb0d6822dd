package schema

import (
	"bytes"
	"encoding/json"
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
