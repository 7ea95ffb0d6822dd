package jsontext

import (
	"encoding/json"
	"testing"
)

func TestAppendStringEscapesOnlyWhatJSONRequires(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"plain text stays as it is", "hello", `"hello"`},
		{"HTML characters and U+2028 are not escaped", "<b>&\u2028", "\"<b>&\u2028\""},
		{"quotes and backslashes are escaped", `a"b\c`, `"a\"b\\c"`},
		{"common control bytes get their short escapes", "a\nb\tc\rd", `"a\nb\tc\rd"`},
		{"other control bytes get \\u escapes", "\x00\x1f", `"\u0000\u001f"`},
	}
	for _, c := range cases {
		got := string(AppendString(nil, c.in))
		if got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
		var back string
		if err := json.Unmarshal([]byte(got), &back); err != nil || back != c.in {
			t.Errorf("%s: %s reads back as %q (%v)", c.name, got, back, err)
		}
	}
}
