// Command benchreport turns the output of `make bench` (go test -bench) into
// ratios against the baselines measured in the same run, printed, and into
// docs/performance.md, docs/performance.json and SVG charts beside them.
// Besides events/s it reads every metric the benchmarks report (peak-RSS-MiB,
// p50-ms, p99-ms) and marks the targets of the processes' memory and
// ingest's latency met or not met.
//
//	go run ./internal/benchreport -in .stack/bench.txt -out docs
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The units the report reads, as go test prints them after each figure.
const (
	eventsPS = "events/s"
	peakRSS  = "peak-RSS-MiB" // VmHWM of the process, the largest one where there are several
	p50      = "p50-ms"
	p99      = "p99-ms"
)

// The targets of the performance issue: the most memory a sluice process
// may hold whatever its load, and ingest's latency at half its maximum rate.
const (
	rssLimitMiB = 128
	p50LimitMs  = 3
	p99LimitMs  = 10
)

// result is one benchmark's runs: every value of every metric, by unit.
type result struct {
	Name    string               `json:"name"`
	Metrics map[string][]float64 `json:"metrics"`
}

// median is the benchmark's median events/s, the figure every ratio uses.
func (r *result) median() float64 { return r.medianOf(eventsPS) }

// medianOf is the median of one metric; 0 when the benchmark is missing or
// did not report it.
func (r *result) medianOf(unit string) float64 {
	if r == nil {
		return 0
	}
	return median(r.Metrics[unit])
}

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
	{"drain of a backlog by a fresh target, vs raw COPY of pre-encoded bytes (the server alone)", "BenchmarkDrain/sluice_apply", "BenchmarkDrain/raw_copy_encoded", 0},
	{"drain of a backlog by a fresh target, vs raw Reader", "BenchmarkDrain/sluice_apply", "BenchmarkDrain/raw_reader", 0},
	{"drain of a backlog into a target with two projections, vs without", "BenchmarkDrain/sluice_apply_2_projections", "BenchmarkDrain/sluice_apply", 0},
	{"one batch of 500 new events, vs raw COPY", "BenchmarkApply/sluice_apply_new", "BenchmarkApply/raw_copy", 0},
	{"one batch of 500 new events, vs raw COPY of pre-encoded bytes", "BenchmarkApply/sluice_apply_new", "BenchmarkApply/raw_copy_encoded", 0},
	{"one batch of 500 through the deduplicating path, vs raw COPY", "BenchmarkApply/sluice_apply", "BenchmarkApply/raw_copy", 0},
	{"one batch of 500 with two projections, vs without", "BenchmarkApply/sluice_apply_2_projections", "BenchmarkApply/sluice_apply", 0},
	{"ingest, 1 request of 100 events at a time (in process)", "BenchmarkPublish/sluice_ingest", "BenchmarkPublish/raw_kafka_go", 0},
	{"ingest as a process, 64 requests of 100 in flight", "BenchmarkIngestProcess/max/c=64", "BenchmarkIngestProcess/raw_kafka_go/c=64", 0},
	// From make bench-peers, a run of its own (-peers): both sides measured in it.
	{"drain of a backlog by `sluice apply`, vs Bento v1.20.0 (make bench-peers)", "BenchmarkPeerDrain/sluice_apply", "BenchmarkPeerDrain/bento", 0},
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
			res = &result{Name: m[1], Metrics: map[string][]float64{}}
			results[m[1]] = res
			order = append(order, m[1])
		}
		// go test prints value-unit pairs: 1198070994 ns/op  16694 events/s  43.08 peak-RSS-MiB
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			res.Metrics[f[i+1]] = append(res.Metrics[f[i+1]], v)
		}
	}
	return results, order, sc.Err()
}

// report is everything the run measured, as the document presents it.
type report struct {
	Comparisons   []comparison // each path of sluice against its raw baseline
	IngestScaling []comparison // ingest over HTTP by requests in flight
	ReplicaRatios []comparison // draining by 2, 3… applier processes against 1
	DrainReplicas []scalePoint
	DrainBacklog  []scalePoint
	Ingest        *ingestProcess
	Results       []*result
}

// scalePoint is one drain by `sluice apply` processes: by replicas or by
// backlog size, against the first point of its series (1 replica, the
// smallest backlog) measured in the same run.
type scalePoint struct {
	N         int     `json:"n"` // replicas, or events in the backlog
	Benchmark string  `json:"benchmark"`
	EventsPS  float64 `json:"events_per_second"`
	Ratio     float64 `json:"ratio_to_first"`
	PeakRSS   float64 `json:"peak_rss_mib"`
}

// ingestProcess is `sluice ingest` as a process: its maximum rate against a
// raw Writer, its peak memory, and its latency at two loads.
type ingestProcess struct {
	MaxEventsPS float64        `json:"max_events_per_second"`
	RawEventsPS float64        `json:"raw_writer_events_per_second"`
	Ratio       float64        `json:"ratio"`
	PeakRSS     float64        `json:"peak_rss_mib"`
	Latency     []latencyPoint `json:"latency"`
}

// latencyPoint is request latency at one load.
type latencyPoint struct {
	Load      string  `json:"load"`
	Benchmark string  `json:"benchmark"`
	EventsPS  float64 `json:"events_per_second"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	Targets   bool    `json:"targets"` // the latency targets hold at this load
}

// The process benchmarks of e2e/bench_test.go, by name.
const (
	drainReplicasPrefix = "BenchmarkDrainReplicas/replicas="
	drainBacklogPrefix  = "BenchmarkDrainBacklog/events="
	ingestMax           = "BenchmarkIngestProcess/max/c=64"
	ingestRaw           = "BenchmarkIngestProcess/raw_kafka_go/c=64"
)

var latencyLoads = []struct {
	load, bench string
	targets     bool
}{
	{"light: 50 requests of 100 a second", "BenchmarkIngestProcess/latency/light", false},
	{"half the maximum rate", "BenchmarkIngestProcess/latency/half_max", true},
}

func main() {
	in := flag.String("in", ".stack/bench.txt", "go test -bench output")
	peers := flag.String("peers", "", "output of make bench-peers, read when the file exists (its own run: Bento against sluice apply)")
	out := flag.String("out", "docs", "directory for performance.md, performance.json and the charts")
	flag.Parse()
	results, order := map[string]*result{}, []string(nil)
	for _, path := range []string{*in, *peers} {
		f, err := os.Open(path)
		if path == *peers && (path == "" || errors.Is(err, fs.ErrNotExist)) {
			continue
		}
		if err != nil {
			fail(err)
		}
		more, names, err := parse(f)
		f.Close()
		if err != nil {
			fail(err)
		}
		maps.Copy(results, more)
		order = append(order, names...)
	}
	r := build(results, order)
	fmt.Print(summary(r))
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	for name, content := range files(r, time.Now()) {
		write(filepath.Join(*out, name), []byte(content))
	}
}

// build sets every benchmark against its baseline of the same run.
func build(results map[string]*result, order []string) report {
	var r report
	for _, c := range comparisons {
		s, b := results[c.sluice], results[c.baseline]
		if s == nil || b == nil || b.median() == 0 {
			continue
		}
		r.Comparisons = append(r.Comparisons, comparison{What: c.what, Sluice: c.sluice, Baseline: c.baseline, SluicePS: s.median(),
			BasePS: b.median(), Ratio: s.median() / b.median(), Target: c.target})
	}
	for _, c := range concurrencies {
		s, b := results[fmt.Sprintf("BenchmarkPublishConcurrent/sluice_ingest_http/c=%d", c)], results[fmt.Sprintf("BenchmarkPublishConcurrent/raw_kafka_go/c=%d", c)]
		if s == nil || b == nil || b.median() == 0 {
			continue
		}
		r.IngestScaling = append(r.IngestScaling, comparison{What: fmt.Sprintf("ingest over HTTP, %d requests of 100 in flight", c), Sluice: s.Name, Baseline: b.Name,
			SluicePS: s.median(), BasePS: b.median(), Ratio: s.median() / b.median(), Target: map[bool]float64{true: 0.7}[c == 8 || c == 64]})
	}
	r.DrainReplicas = series(results, order, drainReplicasPrefix)
	r.DrainBacklog = series(results, order, drainBacklogPrefix)
	// Draining by replicas is a ratio to one replica measured in the same
	// run: it belongs with the other ratios too.
	for _, p := range r.DrainReplicas[min(1, len(r.DrainReplicas)):] {
		first := r.DrainReplicas[0]
		r.ReplicaRatios = append(r.ReplicaRatios, comparison{What: fmt.Sprintf("drain by %d applier processes, vs %d", p.N, first.N), Sluice: p.Benchmark,
			Baseline: first.Benchmark, SluicePS: p.EventsPS, BasePS: first.EventsPS, Ratio: p.Ratio})
	}
	if m := results[ingestMax]; m != nil {
		ip := &ingestProcess{MaxEventsPS: m.median(), RawEventsPS: results[ingestRaw].median(), PeakRSS: m.medianOf(peakRSS)}
		if ip.RawEventsPS > 0 {
			ip.Ratio = ip.MaxEventsPS / ip.RawEventsPS
		}
		for _, l := range latencyLoads {
			if res := results[l.bench]; res != nil {
				ip.Latency = append(ip.Latency, latencyPoint{Load: l.load, Benchmark: l.bench, EventsPS: res.median(),
					P50: res.medianOf(p50), P99: res.medianOf(p99), Targets: l.targets})
			}
		}
		r.Ingest = ip
	}
	for _, n := range order {
		r.Results = append(r.Results, results[n])
	}
	return r
}

// series collects the benchmarks named prefix+N in order of N, each with
// its ratio to the first.
func series(results map[string]*result, order []string, prefix string) []scalePoint {
	var s []scalePoint
	for _, name := range order {
		n, err := strconv.Atoi(strings.TrimPrefix(name, prefix))
		if !strings.HasPrefix(name, prefix) || err != nil {
			continue
		}
		res := results[name]
		s = append(s, scalePoint{N: n, Benchmark: name, EventsPS: res.median(), PeakRSS: res.medianOf(peakRSS)})
	}
	sort.Slice(s, func(i, j int) bool { return s[i].N < s[j].N })
	for i := range s {
		if s[0].EventsPS > 0 {
			s[i].Ratio = s[i].EventsPS / s[0].EventsPS
		}
	}
	return s
}

// all is every ratio the document lists and charts.
func (r report) all() []comparison {
	return slices.Concat(r.Comparisons, r.IngestScaling, r.ReplicaRatios)
}

// summary is what benchreport prints.
func summary(r report) string {
	var b strings.Builder
	for _, c := range r.all() {
		fmt.Fprintf(&b, "%-66s %9.0f events/s  baseline %9.0f  ratio %.2f×%s\n", c.What, c.SluicePS, c.BasePS, c.Ratio, targetNote(c))
	}
	for _, p := range r.DrainReplicas {
		fmt.Fprintf(&b, "drain, %d replica(s)%47s %9.0f events/s  ×%.2f of 1  peak RSS %s\n", p.N, "", p.EventsPS, p.Ratio, rssNote(p.PeakRSS))
	}
	for _, p := range r.DrainBacklog {
		fmt.Fprintf(&b, "drain, backlog of %-48d %9.0f events/s  ×%.2f of the smallest  peak RSS %s\n", p.N, p.EventsPS, p.Ratio, rssNote(p.PeakRSS))
	}
	if ip := r.Ingest; ip != nil {
		fmt.Fprintf(&b, "ingest process, 64 requests of 100 in flight%22s %9.0f events/s  peak RSS %s\n", "", ip.MaxEventsPS, rssNote(ip.PeakRSS))
		for _, l := range ip.Latency {
			fmt.Fprintf(&b, "ingest process latency, %-42s %9.0f events/s  p50 %s  p99 %s\n", l.Load, l.EventsPS,
				latencyNote(l.P50, p50LimitMs, l.Targets), latencyNote(l.P99, p99LimitMs, l.Targets))
		}
	}
	return b.String()
}

// files are the report's files by name: the document, its data and its charts.
func files(r report, measured time.Time) map[string]string {
	doc, _ := json.MarshalIndent(struct {
		MeasuredAt    string         `json:"measured_at"`
		Comparisons   []comparison   `json:"comparisons"`
		DrainReplicas []scalePoint   `json:"drain_replicas,omitempty"`
		DrainBacklog  []scalePoint   `json:"drain_backlog,omitempty"`
		Ingest        *ingestProcess `json:"ingest_process,omitempty"`
		Results       []*result      `json:"results"`
	}{measured.UTC().Format(time.RFC3339), r.all(), r.DrainReplicas, r.DrainBacklog, r.Ingest, r.Results}, "", "  ")
	out := map[string]string{
		"performance.json":       string(doc),
		"performance-ratios.svg": ratioChart(r.all()),
		"performance.md":         markdown(r),
	}
	if len(r.IngestScaling) > 0 {
		out["performance-ingest-scaling.svg"] = scalingChart(r.IngestScaling)
	}
	if len(r.DrainReplicas) > 0 {
		out["performance-drain-replicas.svg"] = panelsChart("sluice apply processes draining one backlog, by replicas of the target",
			drainPanels(r.DrainReplicas, "replicas", "peak RSS of the largest replica, MiB"))
	}
	if len(r.DrainBacklog) > 0 {
		out["performance-drain-backlog.svg"] = panelsChart("one sluice apply process draining backlogs of growing size",
			drainPanels(r.DrainBacklog, "events in the backlog", "peak RSS, MiB"))
	}
	if r.Ingest != nil && len(r.Ingest.Latency) > 0 {
		out["performance-ingest-latency.svg"] = panelsChart("sluice ingest as a process: request latency (100 events a request)",
			latencyPanels(r.Ingest.Latency))
	}
	return out
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

// rssNote is a peak RSS against the memory target.
func rssNote(mib float64) string {
	if mib == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MiB%s", mib, metNote(mib <= rssLimitMiB, fmt.Sprintf("≤ %d MiB", rssLimitMiB)))
}

// latencyNote is a latency, against its limit where the target applies.
func latencyNote(ms, limit float64, applies bool) string {
	if !applies {
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.1f ms%s", ms, metNote(ms <= limit, fmt.Sprintf("≤ %g ms", limit)))
}

func metNote(met bool, target string) string {
	if met {
		return "  (target " + target + ": met)"
	}
	return "  (target " + target + ": not met)"
}

func markdown(r report) string {
	var b strings.Builder
	b.WriteString("# Performance\n\n")
	b.WriteString("Written by `make bench` (`internal/benchreport`) from one run on the local stack: every figure\n")
	b.WriteString("is the median of its runs, and every ratio is against a baseline measured in the same run on\n")
	b.WriteString("the same records — a raw kafka-go Writer or Reader, a raw `COPY` (pgx's CopyFrom of rows built\n")
	b.WriteString("beforehand) into a table of the ledger's shape, its key and indexes, one applier process — since\n")
	b.WriteString("the machines are shared and noisy. The raw numbers are in\n")
	b.WriteString("[performance.json](performance.json).\n\n")
	b.WriteString("![ratios](performance-ratios.svg)\n\n")
	if len(r.IngestScaling) > 0 {
		b.WriteString("![ingest scaling](performance-ingest-scaling.svg)\n\n")
	}
	b.WriteString("| path | sluice events/s | baseline events/s | ratio |\n| --- | ---: | ---: | ---: |\n")
	for _, c := range r.all() {
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.2f×%s |\n", c.What, c.SluicePS, c.BasePS, c.Ratio, targetNote(c))
	}
	if len(r.DrainReplicas) > 0 {
		b.WriteString("\n## Appliers as processes: draining by replicas\n\n")
		b.WriteString("![drain by replicas](performance-drain-replicas.svg)\n\n")
		b.WriteString("| replicas of the target | events/s | ratio to 1 replica | peak RSS of the largest replica |\n| ---: | ---: | ---: | ---: |\n")
		for _, p := range r.DrainReplicas {
			fmt.Fprintf(&b, "| %d | %.0f | %.2f× | %s |\n", p.N, p.EventsPS, p.Ratio, rssNote(p.PeakRSS))
		}
	}
	if len(r.DrainBacklog) > 0 {
		b.WriteString("\n## One applier process: draining by backlog size\n\n")
		b.WriteString("![drain by backlog size](performance-drain-backlog.svg)\n\n")
		fmt.Fprintf(&b, "| events in the backlog | events/s | ratio to %s events | peak RSS |\n| ---: | ---: | ---: | ---: |\n", thousands(r.DrainBacklog[0].N))
		for _, p := range r.DrainBacklog {
			fmt.Fprintf(&b, "| %s | %.0f | %.2f× | %s |\n", thousands(p.N), p.EventsPS, p.Ratio, rssNote(p.PeakRSS))
		}
	}
	if ip := r.Ingest; ip != nil {
		b.WriteString("\n## Ingest as a process\n\n")
		if len(ip.Latency) > 0 {
			b.WriteString("![ingest latency](performance-ingest-latency.svg)\n\n")
		}
		b.WriteString("| load | events/s | p50 | p99 | peak RSS |\n| --- | ---: | ---: | ---: | ---: |\n")
		raw := ""
		if ip.Ratio > 0 {
			raw = fmt.Sprintf(" (%.2f× the raw Writer's %.0f)", ip.Ratio, ip.RawEventsPS)
		}
		fmt.Fprintf(&b, "| maximum: 64 requests of 100 in flight | %.0f%s | | | %s |\n", ip.MaxEventsPS, raw, rssNote(ip.PeakRSS))
		for _, l := range ip.Latency {
			fmt.Fprintf(&b, "| %s | %.0f | %s | %s | |\n", l.Load, l.EventsPS,
				latencyNote(l.P50, p50LimitMs, l.Targets), latencyNote(l.P99, p99LimitMs, l.Targets))
		}
	}
	b.WriteString("\nWhat the benchmarks are: `BenchmarkDrain` (consumer) drains a backlog (100,000 events by\n")
	b.WriteString("default, `SLUICE_BENCH_EVENTS`) into a fresh target from the applier's start to lag 0;\n")
	b.WriteString("`BenchmarkApply` (internal/targetdb) applies single batches; `BenchmarkPublishConcurrent`\n")
	b.WriteString("(producer) publishes 100-event requests over real HTTP at each concurrency, the raw writer\n")
	b.WriteString("called by as many goroutines with the same batches.\n")
	if len(r.DrainReplicas)+len(r.DrainBacklog) > 0 || r.Ingest != nil {
		b.WriteString("\nThe process benchmarks (e2e) run the built binary, without the race detector, as separate\n")
		b.WriteString("processes, and read each one's peak resident memory (VmHWM) at the end of its op.\n")
		b.WriteString("`BenchmarkDrainReplicas` drains one backlog (300,000 events in 6 partitions by default,\n")
		b.WriteString("`SLUICE_BENCH_EVENTS`) into a fresh target with 1, 2 and 3 `sluice apply` processes of the\n")
		b.WriteString("target started at once, from their start to lag 0, rebalances included;\n")
		b.WriteString("`BenchmarkDrainBacklog` drains backlogs of 100,000, 1,000,000 and 5,000,000 events\n")
		b.WriteString("(`SLUICE_BENCH_BACKLOGS`) with one process; `BenchmarkIngestProcess` sends requests of 100\n")
		b.WriteString("events to one `sluice ingest` (200,000 events an op, `SLUICE_BENCH_INGEST_EVENTS`): from 64\n")
		b.WriteString("publishers as fast as it answers, against a raw kafka-go Writer with ingest's settings called\n")
		b.WriteString("by 64 goroutines, then on a fixed schedule at 50 requests a second and at half the maximum\n")
		b.WriteString("rate measured in the same run, each request's latency counted from the moment it was due.\n")
		fmt.Fprintf(&b, "Targets: every process at most %d MiB; at half the maximum rate, p50 ≤ %d ms and p99 ≤ %d ms.\n",
			rssLimitMiB, p50LimitMs, p99LimitMs)
	}
	return b.String()
}

// thousands writes n with commas: 1,000,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
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

// panel is one bar chart of a panelsChart: a value per label, and a limit
// drawn as a dashed line (a target not to exceed; 0: none).
type panel struct {
	title, xTitle string
	labels        []string
	values        []float64
	format        string // of each bar's value
	limit         float64
	limitNote     string
	limited       []bool // which bars the limit is for; nil: every bar
}

// panelsChart draws panels side by side under one title. A bar over its
// panel's limit is drawn in the colour of a target not met.
func panelsChart(title string, panels []panel) string {
	const pw, ph, left, top, bottom = 330, 250, 56, 46, 46
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`, pw*len(panels)+10, ph)
	fmt.Fprintf(&b, `<text x="10" y="18" font-weight="bold">%s</text>`, xmlEscape(title))
	for i, p := range panels {
		x0 := float64(i*pw) + left
		plotW, plotH := float64(pw-left-20), float64(ph-top-bottom)
		maxV := p.limit * 1.15
		for _, v := range p.values {
			maxV = max(maxV, v*1.15)
		}
		if maxV == 0 {
			maxV = 1
		}
		y := func(v float64) float64 { return top + plotH - v/maxV*plotH }
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`, x0-40, top-12, xmlEscape(p.title))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#999"/>`, x0, top, x0, top+plotH)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`, x0, top+plotH, x0+plotW, top+plotH)
		for _, t := range []float64{0, 0.5, 1} {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#555">%s</text>`, x0-4, y(maxV/1.15*t)+4, short(maxV/1.15*t))
		}
		slot := plotW / float64(max(len(p.values), 1))
		for j, v := range p.values {
			color := "#4a7bd0"
			if p.limit > 0 && v > p.limit && (p.limited == nil || p.limited[j]) {
				color = "#d0704a"
			}
			bx := x0 + float64(j)*slot + slot*0.2
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`, bx, y(v), slot*0.6, top+plotH-y(v), color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, bx+slot*0.3, y(v)-4, fmt.Sprintf(p.format, v))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, bx+slot*0.3, top+plotH+16, xmlEscape(p.labels[j]))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#555">%s</text>`, x0+plotW/2, top+plotH+34, xmlEscape(p.xTitle))
		if p.limit > 0 {
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#333" stroke-dasharray="4,3"/>`, x0, x0+plotW, y(p.limit), y(p.limit))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#333">%s</text>`, x0+plotW, y(p.limit)-4, xmlEscape(p.limitNote))
		}
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// drainPanels are a drain series' events/s and peak RSS, by its N.
func drainPanels(s []scalePoint, xTitle, rssTitle string) []panel {
	rate := panel{title: "events/s (ratio to the first)", xTitle: xTitle, format: "%.0f"}
	rss := panel{title: rssTitle, xTitle: xTitle, format: "%.0f", limit: rssLimitMiB, limitNote: fmt.Sprintf("target ≤ %d MiB", rssLimitMiB)}
	for _, p := range s {
		label := strconv.Itoa(p.N)
		if p.N >= 1000 {
			label = short(float64(p.N))
		}
		rate.labels = append(rate.labels, fmt.Sprintf("%s (%.2f×)", label, p.Ratio))
		rate.values = append(rate.values, p.EventsPS)
		rss.labels = append(rss.labels, label)
		rss.values = append(rss.values, p.PeakRSS)
	}
	return []panel{rate, rss}
}

// latencyPanels are ingest's p50 and p99 by load, with the targets that
// hold at half the maximum rate.
func latencyPanels(ls []latencyPoint) []panel {
	p50s := panel{title: "p50, ms", xTitle: "load", format: "%.1f", limit: p50LimitMs, limitNote: fmt.Sprintf("target at half max: ≤ %d ms", p50LimitMs)}
	p99s := panel{title: "p99, ms", xTitle: "load", format: "%.1f", limit: p99LimitMs, limitNote: fmt.Sprintf("target at half max: ≤ %d ms", p99LimitMs)}
	for _, l := range ls {
		label := "light"
		if l.Targets {
			label = "half max"
		}
		p50s.labels, p50s.values, p50s.limited = append(p50s.labels, label), append(p50s.values, l.P50), append(p50s.limited, l.Targets)
		p99s.labels, p99s.values, p99s.limited = append(p99s.labels, label), append(p99s.values, l.P99), append(p99s.limited, l.Targets)
	}
	return []panel{p50s, p99s}
}

// short writes a quantity in few characters: 950, 12k, 1.5M.
func short(v float64) string {
	switch {
	case v >= 1e6:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e6), ".0") + "M"
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e3), ".0") + "k"
	case v >= 10 || v == 0:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}
