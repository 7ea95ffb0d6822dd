// Command benchreport turns the output of `make bench` (go test -bench) into
// ratios against the baselines measured in the same run, printed, and into
// docs/performance.md, docs/performance.json and SVG charts beside them.
//
//	go run ./internal/benchreport -in .stack/bench.txt -out docs
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// result is one benchmark's runs.
type result struct {
	Name     string    `json:"name"`
	EventsPS []float64 `json:"events_per_second"`
	NsPerOp  []float64 `json:"ns_per_op"`
}

func (r *result) median() float64 { return median(r.EventsPS) }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// comparison is one path of sluice against its baseline.
type comparison struct {
	What     string  `json:"what"`
	Sluice   string  `json:"sluice"`
	Baseline string  `json:"baseline"`
	SluicePS float64 `json:"sluice_events_per_second"`
	BasePS   float64 `json:"baseline_events_per_second"`
	Ratio    float64 `json:"ratio"`
	Target   float64 `json:"target,omitempty"`
}

var comparisons = []struct {
	what, sluice, baseline string
	target                 float64
}{
	{"drain of a backlog by a fresh target, vs raw COPY", "BenchmarkDrain/sluice_apply", "BenchmarkDrain/raw_copy", 0.8},
	{"drain of a backlog by a fresh target, vs raw Reader", "BenchmarkDrain/sluice_apply", "BenchmarkDrain/raw_reader", 0},
	{"one batch of 500 new events, vs raw COPY", "BenchmarkApply/sluice_apply_new", "BenchmarkApply/raw_copy", 0},
	{"one batch of 500 through the deduplicating path, vs raw COPY", "BenchmarkApply/sluice_apply", "BenchmarkApply/raw_copy", 0},
	{"one batch of 500 with two projections, vs without", "BenchmarkApply/sluice_apply_2_projections", "BenchmarkApply/sluice_apply", 0},
	{"ingest, 1 request of 100 events at a time (in process)", "BenchmarkPublish/sluice_ingest", "BenchmarkPublish/raw_kafka_go", 0},
}

var concurrencies = []int{1, 4, 8, 16, 64}

var line = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func parse(r io.Reader) (map[string]*result, []string, error) {
	results := map[string]*result{}
	var order []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		res, ok := results[m[1]]
		if !ok {
			res = &result{Name: m[1]}
			results[m[1]] = res
			order = append(order, m[1])
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "events/s":
				res.EventsPS = append(res.EventsPS, v)
			case "ns/op":
				res.NsPerOp = append(res.NsPerOp, v)
			}
		}
	}
	return results, order, sc.Err()
}

func main() {
	in := flag.String("in", ".stack/bench.txt", "go test -bench output")
	out := flag.String("out", "docs", "directory for performance.md, performance.json and the charts")
	flag.Parse()
	f, err := os.Open(*in)
	if err != nil {
		fail(err)
	}
	results, order, err := parse(f)
	f.Close()
	if err != nil {
		fail(err)
	}
	var comps []comparison
	for _, c := range comparisons {
		s, b := results[c.sluice], results[c.baseline]
		if s == nil || b == nil || b.median() == 0 {
			continue
		}
		comps = append(comps, comparison{What: c.what, Sluice: c.sluice, Baseline: c.baseline, SluicePS: s.median(),
			BasePS: b.median(), Ratio: s.median() / b.median(), Target: c.target})
	}
	var scaling []comparison
	for _, c := range concurrencies {
		s, b := results[fmt.Sprintf("BenchmarkPublishConcurrent/sluice_ingest_http/c=%d", c)], results[fmt.Sprintf("BenchmarkPublishConcurrent/raw_kafka_go/c=%d", c)]
		if s == nil || b == nil || b.median() == 0 {
			continue
		}
		scaling = append(scaling, comparison{What: fmt.Sprintf("ingest over HTTP, %d requests of 100 in flight", c), Sluice: s.Name, Baseline: b.Name,
			SluicePS: s.median(), BasePS: b.median(), Ratio: s.median() / b.median(), Target: map[bool]float64{true: 0.7}[c == 8 || c == 64]})
	}
	all := append(append([]comparison(nil), comps...), scaling...)
	for _, c := range all {
		fmt.Printf("%-66s %9.0f events/s  baseline %9.0f  ratio %.2f×%s\n", c.What, c.SluicePS, c.BasePS, c.Ratio, targetNote(c))
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	raw := make([]*result, 0, len(order))
	for _, n := range order {
		raw = append(raw, results[n])
	}
	doc, _ := json.MarshalIndent(map[string]any{"measured_at": time.Now().UTC().Format(time.RFC3339), "comparisons": all, "results": raw}, "", "  ")
	write(filepath.Join(*out, "performance.json"), doc)
	write(filepath.Join(*out, "performance-ratios.svg"), []byte(ratioChart(all)))
	if len(scaling) > 0 {
		write(filepath.Join(*out, "performance-ingest-scaling.svg"), []byte(scalingChart(scaling)))
	}
	write(filepath.Join(*out, "performance.md"), []byte(markdown(all, len(scaling) > 0)))
}

func targetNote(c comparison) string {
	if c.Target == 0 {
		return ""
	}
	if c.Ratio >= c.Target {
		return fmt.Sprintf("  (target ≥ %.1f×: met)", c.Target)
	}
	return fmt.Sprintf("  (target ≥ %.1f×: not met)", c.Target)
}

func markdown(all []comparison, scaling bool) string {
	var b strings.Builder
	b.WriteString("# Performance\n\n")
	b.WriteString("Written by `make bench` (`internal/benchreport`) from one run on the local stack: every figure\n")
	b.WriteString("is the median of its runs, and every ratio is against a baseline measured in the same run on\n")
	b.WriteString("the same records — a raw kafka-go Writer or Reader, a raw `COPY` into a table with the ledger's\n")
	b.WriteString("key — since the machines are shared and noisy. The raw numbers are in\n")
	b.WriteString("[performance.json](performance.json).\n\n")
	b.WriteString("![ratios](performance-ratios.svg)\n\n")
	if scaling {
		b.WriteString("![ingest scaling](performance-ingest-scaling.svg)\n\n")
	}
	b.WriteString("| path | sluice events/s | baseline events/s | ratio |\n| --- | ---: | ---: | ---: |\n")
	for _, c := range all {
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.2f×%s |\n", c.What, c.SluicePS, c.BasePS, c.Ratio, targetNote(c))
	}
	b.WriteString("\nWhat the benchmarks are: `BenchmarkDrain` (consumer) drains a backlog (100,000 events by\n")
	b.WriteString("default, `SLUICE_BENCH_EVENTS`) into a fresh target from the applier's start to lag 0;\n")
	b.WriteString("`BenchmarkApply` (internal/targetdb) applies single batches; `BenchmarkPublishConcurrent`\n")
	b.WriteString("(producer) publishes 100-event requests over real HTTP at each concurrency, the raw writer\n")
	b.WriteString("called by as many goroutines with the same batches.\n")
	return b.String()
}

// ratioChart is a horizontal bar per comparison: the ratio, with 1× marked.
func ratioChart(all []comparison) string {
	const left, width, row = 430, 360, 26
	h := 40 + row*len(all)
	maxR := 1.2
	for _, c := range all {
		maxR = max(maxR, c.Ratio*1.1)
	}
	x := func(r float64) float64 { return left + width*r/maxR }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`, left+width+60, h)
	fmt.Fprintf(&b, `<text x="10" y="18" font-weight="bold">sluice ÷ baseline, same run (1× = as fast as the raw baseline)</text>`)
	for i, c := range all {
		y := 30 + i*row
		color := "#4a7bd0"
		if c.Target > 0 && c.Ratio < c.Target {
			color = "#d0704a"
		}
		fmt.Fprintf(&b, `<text x="10" y="%d">%s</text>`, y+15, xmlEscape(truncate(c.What, 62)))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="18" fill="%s"/>`, left, y+2, x(c.Ratio)-left, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%.2f×</text>`, x(c.Ratio)+4, y+15, c.Ratio)
		if c.Target > 0 {
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#333" stroke-dasharray="2,2"/>`, x(c.Target), x(c.Target), y, y+22)
		}
	}
	fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="26" y2="%d" stroke="#999"/>`, x(1), x(1), h)
	b.WriteString(`</svg>`)
	return b.String()
}

// scalingChart plots events/s against requests in flight, sluice and raw.
func scalingChart(s []comparison) string {
	const w, h, pad = 560, 300, 50
	maxY := 0.0
	for _, c := range s {
		maxY = max(maxY, c.BasePS, c.SluicePS)
	}
	maxY *= 1.1
	x := func(i int) float64 { return pad + float64(i)*(w-2*pad)/float64(max(len(s)-1, 1)) }
	y := func(v float64) float64 { return h - pad - v/maxY*(h-2*pad) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`, w, h)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-weight="bold">ingest events/s by requests of 100 in flight</text>`, pad)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`, pad, h-pad, w-pad, h-pad)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`, pad, pad, pad, h-pad)
	for _, t := range []float64{0, 0.25, 0.5, 0.75, 1} {
		fmt.Fprintf(&b, `<text x="4" y="%.1f">%.0fk</text>`, y(maxY*t)+4, maxY*t/1000)
	}
	for series, color := range map[string]string{"sluice": "#4a7bd0", "raw": "#999"} {
		var pts []string
		for i, c := range s {
			v := c.SluicePS
			if series == "raw" {
				v = c.BasePS
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(v)))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, x(i), y(v), color)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, color, strings.Join(pts, " "))
	}
	for i, c := range s {
		n := strings.TrimPrefix(c.Sluice, "BenchmarkPublishConcurrent/sluice_ingest_http/c=")
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, x(i), h-pad+16, n)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#4a7bd0">sluice ingest (HTTP)</text><text x="%d" y="%d" fill="#777">raw kafka-go Writer</text>`, w-200, pad+10, w-200, pad+26)
	b.WriteString(`</svg>`)
	return b.String()
}

func truncate(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func write(path string, b []byte) {
	if err := os.WriteFile(path, b, 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "benchreport:", err)
	os.Exit(1)
}
