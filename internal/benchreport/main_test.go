package main

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"
)

// benchOutput is go test -bench output as make bench collects it: the
// existing in-process benchmarks and the process benchmarks of e2e, two runs
// of some, with the log lines go test prints between them.
const benchOutput = `goos: linux
BenchmarkPublishConcurrent/sluice_ingest_http/c=8-2   	    5000	    700000 ns/op	    140000 events/s
BenchmarkPublishConcurrent/raw_kafka_go/c=8-2         	    5000	    690000 ns/op	    150000 events/s
BenchmarkDrain/raw_copy-2          	       1	1000000000 ns/op	    100000 events/s
BenchmarkDrain/sluice_apply-2      	       1	2000000000 ns/op	     50000 events/s
BenchmarkDrainReplicas/replicas=1-2         	       1	3311433792 ns/op	     15000 events/s	        43.39 peak-RSS-MiB
BenchmarkDrainReplicas/replicas=2-2         	       1	3199334157 ns/op	     27000 events/s	        42.17 peak-RSS-MiB
BenchmarkDrainReplicas/replicas=3-2         	       1	2455175437 ns/op	     36000 events/s	        42.16 peak-RSS-MiB
BenchmarkDrainBacklog/events=100000-2         	       1	1198070994 ns/op	     40000 events/s	        43.08 peak-RSS-MiB
--- BENCH: BenchmarkDrainBacklog/events=100000-2
    bench_test.go:67: backlog: 100000 events in 6 partitions of sluice.bench.backlog-100000-8d440d02, produced in 452ms
BenchmarkDrainBacklog/events=5000000-2         	       1	99000000000 ns/op	     38000 events/s	       150 peak-RSS-MiB
BenchmarkDrainBacklog/events=5000000-2         	       1	99000000000 ns/op	     36000 events/s	       140 peak-RSS-MiB
BenchmarkDrainBacklog/events=1000000-2         	       1	20000000000 ns/op	     39000 events/s	        45 peak-RSS-MiB
BenchmarkIngestProcess/max/c=64-2           	       1	1193768205 ns/op	    100000 events/s	        53.15 peak-RSS-MiB
BenchmarkIngestProcess/raw_kafka_go/c=64-2  	       1	 619104700 ns/op	    200000 events/s
BenchmarkIngestProcess/latency/light-2      	       1	5992470514 ns/op	      5006 events/s	         2.5 p50-ms	         4.0 p99-ms
BenchmarkIngestProcess/latency/half_max-2   	       1	2451392823 ns/op	     50000 events/s	         2.9 p50-ms	        12.5 p99-ms
PASS
`

func TestReport(t *testing.T) {
	results, order, err := parse(strings.NewReader(benchOutput))
	if err != nil {
		t.Fatal(err)
	}
	r := build(results, order)

	if got := results["BenchmarkDrainBacklog/events=5000000"].medianOf(peakRSS); got != 145 {
		t.Errorf("median peak RSS of two runs = %v, want 145", got)
	}
	if len(r.Comparisons) != 2 || r.Comparisons[0].Ratio != 0.5 || r.Comparisons[1].Ratio != 0.5 {
		t.Errorf("comparisons = %+v, want the drain against raw COPY and ingest against the raw Writer, both at 0.5×", r.Comparisons)
	}
	var ns []int
	for _, p := range r.DrainBacklog {
		ns = append(ns, p.N)
	}
	if len(ns) != 3 || ns[0] != 100_000 || ns[1] != 1_000_000 || ns[2] != 5_000_000 {
		t.Errorf("backlogs in order %v, want 100000, 1000000, 5000000", ns)
	}
	if got := r.DrainReplicas[2].Ratio; got != 36000.0/15000 {
		t.Errorf("3 replicas against 1: %v", got)
	}
	if len(r.ReplicaRatios) != 2 || r.Ingest == nil || r.Ingest.Ratio != 0.5 || len(r.Ingest.Latency) != 2 {
		t.Fatalf("replica ratios %+v, ingest %+v", r.ReplicaRatios, r.Ingest)
	}

	files := files(r, time.Unix(0, 0))
	md := files["performance.md"]
	for _, want := range []string{
		"| ingest over HTTP, 8 requests of 100 in flight | 140000 | 150000 | 0.93×  (target ≥ 0.7×: met) |",
		"| drain by 3 applier processes, vs 1 | 36000 | 15000 | 2.40× |",
		"| 5,000,000 | 37000 | 0.93× | 145 MiB  (target ≤ 128 MiB: not met) |",
		"| 1,000,000 | 39000 | 0.97× | 45 MiB  (target ≤ 128 MiB: met) |",
		"| maximum: 64 requests of 100 in flight | 100000 (0.50× the raw Writer's 200000) | | | 53 MiB  (target ≤ 128 MiB: met) |",
		"| light: 50 requests of 100 a second | 5006 | 2.5 ms | 4.0 ms | |",
		"| half the maximum rate | 50000 | 2.9 ms  (target ≤ 3 ms: met) | 12.5 ms  (target ≤ 10 ms: not met) | |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("performance.md lacks the row\n%s\nin\n%s", want, md)
		}
	}
	for _, name := range []string{"performance-ratios.svg", "performance-ingest-scaling.svg", "performance-drain-replicas.svg",
		"performance-drain-backlog.svg", "performance-ingest-latency.svg"} {
		svg, ok := files[name]
		if !ok {
			t.Errorf("no %s", name)
			continue
		}
		if !strings.Contains(md, "("+name+")") {
			t.Errorf("performance.md does not show %s", name)
		}
		dec := xml.NewDecoder(strings.NewReader(svg))
		for {
			if _, err := dec.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Errorf("%s is not well-formed: %v", name, err)
				break
			}
		}
	}
	var doc struct {
		Comparisons []comparison     `json:"comparisons"`
		Backlog     []scalePoint     `json:"drain_backlog"`
		Ingest      ingestProcess    `json:"ingest_process"`
		Results     []map[string]any `json:"results"`
	}
	if err := json.Unmarshal([]byte(files["performance.json"]), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Comparisons) != 5 || len(doc.Backlog) != 3 || doc.Ingest.PeakRSS != 53.15 || len(doc.Results) != len(order) {
		t.Errorf("performance.json: %d comparisons, %d backlogs, ingest %+v, %d results", len(doc.Comparisons), len(doc.Backlog), doc.Ingest, len(doc.Results))
	}
}

// A run without the process benchmarks renders as before: no section, no
// chart of theirs.
func TestReportWithoutProcessBenchmarks(t *testing.T) {
	results, order, err := parse(strings.NewReader(strings.Join(strings.Split(benchOutput, "\n")[:5], "\n")))
	if err != nil {
		t.Fatal(err)
	}
	files := files(build(results, order), time.Unix(0, 0))
	if len(files) != 4 {
		t.Errorf("files %d, want performance.md, .json, the ratios and the ingest scaling", len(files))
	}
	if md := files["performance.md"]; strings.Contains(md, "##") || strings.Contains(md, "peak RSS") {
		t.Errorf("sections of process benchmarks without them:\n%s", md)
	}
}
