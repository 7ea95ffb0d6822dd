package schema

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// worstShapes are the events hardest on a decoder, each about a body's
// worth (1 MiB) but the ordinary one and the deep one: decoding must cost
// the same per byte whatever the shape.
func worstShapes() []struct {
	name string
	body []byte
} {
	var members strings.Builder
	for i := range 50_000 {
		fmt.Fprintf(&members, `,"ext%05d":"value-%05d"`, i, i)
	}
	deep := strings.Repeat(`[{"a":`, maxDataDepth/2) + "1" + strings.Repeat("}]", maxDataDepth/2)
	escaped := strings.Repeat(`caf\u00e9 \"quoted\"\n\ttab \\ back <&> `, 1<<20/40)
	return []struct {
		name string
		body []byte
	}{
		{"ordinary", benchEvent},
		{"50000-extensions", []byte(event(members.String()))},
		{"data-at-depth-limit", []byte(event(`,"data":` + deep))},
		{"long-escaped-strings", []byte(event(`,"data":{"text":"` + escaped + `","more":"` + escaped + `"}`))},
	}
}

// BenchmarkDecodeWorstShapes reports DecodeEvent's cost a byte for each of
// worstShapes, and encoding/json's (json.Unmarshal into map[string]any,
// which checks less) on the same bodies as the reference.
//
//	go test -run '^$' -bench DecodeWorstShapes -benchmem ./schema/
func BenchmarkDecodeWorstShapes(b *testing.B) {
	for _, shape := range worstShapes() {
		b.Run(shape.name+"/DecodeEvent", func(b *testing.B) {
			if _, err := DecodeEvent(shape.body); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(shape.body)))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = DecodeEvent(shape.body)
			}
			reportNsPerByte(b, len(shape.body))
		})
		b.Run(shape.name+"/encoding-json", func(b *testing.B) {
			b.SetBytes(int64(len(shape.body)))
			b.ReportAllocs()
			for b.Loop() {
				var m map[string]any
				if err := json.Unmarshal(shape.body, &m); err != nil {
					b.Fatal(err)
				}
			}
			reportNsPerByte(b, len(shape.body))
		})
	}
}

func reportNsPerByte(b *testing.B, size int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(size), "ns/byte")
}
