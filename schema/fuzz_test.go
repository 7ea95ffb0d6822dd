package schema

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
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
