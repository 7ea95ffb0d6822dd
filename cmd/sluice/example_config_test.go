package main

import (
	"bufio"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestExampleConfigNamesEveryKey walks every key the configuration accepts
// (the yaml tags of config and of every struct under it, slices of structs
// included) and fails naming each one deploy/sluice.example.yaml does not
// show as a key at its place, set or commented out: the example is where
// an operator learns what can be set.
func TestExampleConfigNamesEveryKey(t *testing.T) {
	const example = "../../deploy/sluice.example.yaml"
	f, err := os.Open(example)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	shown, err := exampleKeys(bufio.NewScanner(f))
	if err != nil {
		t.Fatal(err)
	}
	accepted := configKeys(reflect.TypeOf(config{}), "")
	if len(accepted) < 50 {
		t.Fatalf("only %d keys found in config: the walk misses fields", len(accepted))
	}
	for _, key := range accepted {
		if !shown[key] {
			t.Errorf("%s: accepted by the configuration, not shown in %s", key, example)
		}
	}
}

// configKeys lists the keys of struct type typ as paths under prefix:
// "apply.blocker_policy.after", "targets[].projections[].sql".
func configKeys(typ reflect.Type, prefix string) []string {
	var keys []string
	for i := range typ.NumField() {
		field := typ.Field(i)
		name, _, _ := strings.Cut(field.Tag.Get("yaml"), ",")
		if !field.IsExported() || name == "" || name == "-" {
			continue
		}
		path := prefix + name
		keys = append(keys, path)
		ft := field.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Slice {
			path += "[]"
			ft = ft.Elem()
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
		}
		if ft.Kind() == reflect.Struct {
			keys = append(keys, configKeys(ft, path+".")...)
		}
	}
	return keys
}

// exampleKey is a line that holds a key in block style, set or commented
// out: indentation, then an optional '#' (the rest is read as if the '#'
// and one space were not there), an optional list dash, the key and ':'.
var exampleKey = regexp.MustCompile(`^( *)(?:# ?)?( *)(- +)?([a-z_][a-z0-9_]*):(?:\s|$)`)

// exampleKeys reads the keys of an example file as paths, each placed under
// the last key less indented than it; a key after a list dash is an item's
// ("targets[].name").
func exampleKeys(sc *bufio.Scanner) (map[string]bool, error) {
	type open struct {
		col  int
		path string
	}
	var stack []open
	keys := map[string]bool{}
	for sc.Scan() {
		m := exampleKey.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		col := len(m[1]) + len(m[2])
		item := m[3] != ""
		if item {
			col += len(m[3])
		}
		for len(stack) > 0 && stack[len(stack)-1].col >= col {
			stack = stack[:len(stack)-1]
		}
		path := m[4]
		if len(stack) > 0 {
			parent := stack[len(stack)-1].path
			if item || isList(parent, keys) {
				parent += "[]"
			}
			path = parent + "." + m[4]
		}
		keys[path] = true
		stack = append(stack, open{col, path})
	}
	return keys, sc.Err()
}

// isList reports a path that an earlier item showed to be a list, so that
// the item's second and later keys (indented like its first, without the
// dash) are placed under it too.
func isList(path string, keys map[string]bool) bool {
	for k := range keys {
		if strings.HasPrefix(k, path+"[].") {
			return true
		}
	}
	return false
}

func TestExampleConfigReaderPlacesKeys(t *testing.T) {
	const sample = `# a comment: not a key
kafka:
  brokers: [k:9092]
  # tls:                  # commented out
  #   ca_file: ca.pem
targets:
  - name: a
    dsn: postgres://
    projections:
      - name: p
        sql: SELECT 1
    # - name: commented
  - name: b
    max_conns: 2
log:
  level: info
`
	got, err := exampleKeys(bufio.NewScanner(strings.NewReader(sample)))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kafka", "kafka.brokers", "kafka.tls", "kafka.tls.ca_file", "targets", "targets[].name", "targets[].dsn",
		"targets[].projections", "targets[].projections[].name", "targets[].projections[].sql", "targets[].max_conns", "log", "log.level"}
	for _, k := range want {
		if !got[k] {
			t.Errorf("%s not read", k)
		}
	}
	if len(got) != len(want) {
		t.Errorf("read %d keys, want %d: %v", len(got), len(want), got)
	}
}
