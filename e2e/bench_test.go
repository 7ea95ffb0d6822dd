package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/testenv"
)

// The benchmarks of this file run sluice as an operator runs it: the built
// binary, without the race detector, as separate processes on the local
// stack, so that each process's peak resident memory is its own (VmHWM in
// /proc/<pid>/status) and nothing of the benchmark's own work is counted in
// it. `make bench` runs them with -benchtime 1x: one op is a whole drain or
// a whole burst of requests. Every figure is reported with go test's
// ReportMetric (events/s, peak-RSS-MiB, p50-ms, p99-ms) for
// internal/benchreport, which sets it against its baseline of the same run.
//
// Sizes: SLUICE_BENCH_EVENTS (backlog of BenchmarkDrainReplicas, 300,000),
// SLUICE_BENCH_BACKLOGS (backlogs of BenchmarkDrainBacklog, comma-separated,
// 100000,1000000,5000000), SLUICE_BENCH_INGEST_EVENTS (events per op of
// BenchmarkIngestProcess, 200,000).

// BenchmarkDrainReplicas drains one backlog (SLUICE_BENCH_EVENTS events in 6
// partitions) into a fresh target with 1, 2 and 3 `sluice apply` replicas of
// that target, all started at once (one consumer group). One op runs from
// the replicas' start to lag 0, rebalances as the replicas join included:
// what scaling out after an outage gives.
func BenchmarkDrainReplicas(b *testing.B) {
	events := testenv.BenchSize(b, "SLUICE_BENCH_EVENTS", 300_000)
	topic := backlogTopic(b, events)
	for _, replicas := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			benchDrain(b, topic, events, replicas)
		})
	}
}

// BenchmarkDrainBacklog drains backlogs of growing size (SLUICE_BENCH_BACKLOGS)
// with one replica: the rate must hold and the peak memory must stay flat
// whatever the backlog, since an applier holds a bounded batch per
// partition, never the backlog.
func BenchmarkDrainBacklog(b *testing.B) {
	for _, events := range backlogSizes(b) {
		b.Run(fmt.Sprintf("events=%d", events), func(b *testing.B) {
			benchDrain(b, backlogTopic(b, events), events, 1)
		})
	}
}

// BenchmarkIngestProcess measures one `sluice ingest` process taking
// requests of 100 events over HTTP:
//
//   - max/c=64: 64 publishers, each sending its next request as soon as the
//     last was answered: the most the process takes, and its peak memory;
//   - raw_kafka_go/c=64: the baseline, a kafka-go Writer with ingest's
//     settings called by 64 goroutines with 100-record batches, in this
//     process;
//   - latency/light: 50 requests a second, each measured from the moment it
//     was due;
//   - latency/half_max: half the rate max/c=64 measured in this run, the same
//     way. Requests are sent on a schedule whatever the answers, so a process
//     that falls behind shows as latency, not as a slower client.
func BenchmarkIngestProcess(b *testing.B) {
	requireServices(b)
	events := testenv.BenchSize(b, "SLUICE_BENCH_INGEST_EVENTS", 200_000)
	const perRequest, publishers = 100, 64
	requests := max(events/perRequest, 1)
	// max_in_flight above the publishers: the limit must never be what is
	// measured (it answers 503 at the limit).
	extra := fmt.Sprintf("  max_in_flight: %d", 4*publishers)
	// SLUICE_BENCH_INGEST_LINGER: ingest.linger for this run (default the
	// configuration's own), to read latency against throughput.
	if linger := os.Getenv("SLUICE_BENCH_INGEST_LINGER"); linger != "" {
		extra += "\n  linger: " + linger
	}
	p := newPipeline(b, pipelineOptions{binary: benchBinary(b), prepare: dieWithTest, extraIngest: extra})
	ingest := p.startIngest()
	publisher := &ingestPublisher{
		url: "http://" + p.ingestAt + "/v1/events", key: p.key,
		client: &http.Client{Timeout: time.Minute,
			Transport: &http.Transport{MaxIdleConnsPerHost: publishers, MaxConnsPerHost: publishers}},
	}
	b.Cleanup(publisher.client.CloseIdleConnections)

	var maxRate float64 // events/s of max/c=64 in this run
	b.Run(fmt.Sprintf("max/c=%d", publishers), func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			bodies := requestBodies("max-"+randomID(), requests, perRequest)
			b.StartTimer()
			publisher.saturate(b, bodies, publishers)
		}
		b.StopTimer()
		maxRate = float64(b.N*requests*perRequest) / b.Elapsed().Seconds()
		b.ReportMetric(maxRate, "events/s")
		b.ReportMetric(peakRSSMiB(b, ingest), "peak-RSS-MiB")
	})

	b.Run(fmt.Sprintf("raw_kafka_go/c=%d", publishers), func(b *testing.B) {
		b.StopTimer()
		cluster := kafkaadmin.New(kafkaadmin.Config{Brokers: p.brokers})
		defer cluster.Close()
		w := cluster.NewWriter(kafkaadmin.WriterConfig{Topic: p.topic}) // what `sluice ingest` builds
		defer w.Close()
		for range b.N {
			b.StopTimer()
			batches := recordBatches("raw-"+randomID(), requests, perRequest)
			b.StartTimer()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range publishers {
				wg.Go(func() {
					for i := int(next.Add(1)) - 1; i < len(batches); i = int(next.Add(1)) - 1 {
						if err := w.WriteMessages(context.Background(), batches[i]...); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N*requests*perRequest)/b.Elapsed().Seconds(), "events/s")
	})

	paced := func(b *testing.B, perSecond float64, count int) {
		var latencies []time.Duration
		for range b.N {
			b.StopTimer()
			bodies := requestBodies("paced-"+randomID(), count, perRequest)
			b.StartTimer()
			latencies = append(latencies, publisher.paced(b, bodies, perSecond, publishers)...)
		}
		b.StopTimer()
		b.ReportMetric(float64(len(latencies)*perRequest)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(percentileMs(latencies, 0.50), "p50-ms")
		b.ReportMetric(percentileMs(latencies, 0.99), "p99-ms")
	}
	b.Run("latency/light", func(b *testing.B) { paced(b, 50, 300) })
	b.Run("latency/half_max", func(b *testing.B) {
		if maxRate == 0 {
			b.Skip("needs max/c=64 measured in the same run (a -bench pattern left it out)")
		}
		paced(b, maxRate/2/perRequest, requests)
	})
}

// benchDrain runs b.N drains of topic's events into fresh targets by
// replicas processes each, and reports events/s and the peak RSS of the
// largest replica.
func benchDrain(b *testing.B, topic string, events, replicas int) {
	bin := benchBinary(b)
	b.StopTimer()
	b.ResetTimer()
	var peak float64
	for range b.N {
		// A fresh target: its own database and consumer group.
		p := newPipeline(b, pipelineOptions{topic: topic, binary: bin, defaultApply: true, prepare: dieWithTest})
		probe := p.db("a")
		b.StartTimer()
		var procs []*proc
		for i := range replicas {
			procs = append(procs, p.start(fmt.Sprintf("apply-a-%d", i+1), "apply", "--target", p.targets["a"], "--listen", testenv.FreeAddr(b)))
		}
		waitApplied(b, p, procs, events)
		b.StopTimer()
		for _, pr := range procs {
			peak = max(peak, peakRSSMiB(b, pr))
		}
		var rows int
		if err := probe.QueryRow(context.Background(), `SELECT count(*) FROM sluice_events`).Scan(&rows); err != nil || rows != events {
			b.Fatalf("the target holds %d rows, want %d (%v)", rows, events, err)
		}
		// Stopped now, not at the end of the benchmark: the next op's
		// replicas must have the machine to themselves.
		for _, pr := range procs {
			if err := pr.stop(30 * time.Second); err != nil {
				b.Logf("%s: %v", pr.name, err)
			}
		}
	}
	b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(peak, "peak-RSS-MiB")
}

// waitApplied waits until the target's offsets rows for the pipeline's topic
// sum to events: every record applied, lag 0. It fails when a replica exits
// or when nothing moves for two minutes, never on a slow drain.
func waitApplied(b *testing.B, p *pipeline, procs []*proc, events int) {
	b.Helper()
	probe := p.db("a")
	var applied, last int64
	progressed := time.Now()
	for {
		for _, pr := range procs {
			if !pr.running() {
				out, _ := os.ReadFile(pr.log)
				b.Fatalf("%s exited: %v\n%s", pr.name, pr.err, tail(string(out), 30))
			}
		}
		err := probe.QueryRow(context.Background(),
			`SELECT coalesce(sum(next_offset), 0) FROM sluice_offsets WHERE topic = $1`, p.topic).Scan(&applied)
		if err != nil {
			b.Fatal(err)
		}
		if applied >= int64(events) {
			return
		}
		if applied != last {
			last, progressed = applied, time.Now()
		} else if time.Since(progressed) > 2*time.Minute {
			b.Fatalf("no progress for 2m: %d of %d events applied", applied, events)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ingestPublisher posts prepared request bodies to one ingest process.
type ingestPublisher struct {
	url, key string
	client   *http.Client
}

// post sends one request and fails on any answer but 202: a benchmark that
// retried would measure its retries.
func (ip *ingestPublisher) post(body []byte) error {
	req, err := http.NewRequest(http.MethodPost, ip.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	req.Header.Set("Authorization", "Bearer "+ip.key)
	resp, err := ip.client.Do(req)
	if err != nil {
		return err
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("status %d: %s", resp.StatusCode, answer)
	}
	return nil
}

// saturate sends bodies with c requests in flight, each publisher sending
// its next as soon as the last is answered.
func (ip *ingestPublisher) saturate(b *testing.B, bodies [][]byte, c int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(bodies); i = int(next.Add(1)) - 1 {
				if err := ip.post(bodies[i]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// paced sends bodies at perSecond requests a second on a fixed schedule, by
// up to workers requests in flight, and returns each request's latency from
// the moment it was due to its answer: a request that waits for a free
// worker has that wait counted (no coordinated omission). Only a late wake
// of the scheduler itself (a busy machine) is not: it is the client's delay.
func (ip *ingestPublisher) paced(b *testing.B, bodies [][]byte, perSecond float64, workers int) []time.Duration {
	type due struct {
		i  int
		at time.Time
	}
	interval := time.Duration(float64(time.Second) / perSecond)
	latencies := make([]time.Duration, len(bodies))
	jobs := make(chan due)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				if err := ip.post(bodies[j.i]); err != nil {
					b.Error(err)
				}
				latencies[j.i] = time.Since(j.at)
			}
		})
	}
	start := time.Now()
	for i := range bodies {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
			at = time.Now()
		}
		jobs <- due{i, at}
	}
	close(jobs)
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return latencies
}

// percentileMs is the q-quantile of ds in milliseconds (nearest rank).
func percentileMs(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := max(int(math.Ceil(q*float64(len(s))))-1, 0)
	return float64(s[i]) / float64(time.Millisecond)
}

// requestBodies are count batch requests of perRequest events with ids of
// their own.
func requestBodies(run string, count, perRequest int) [][]byte {
	bodies := make([][]byte, count)
	for i := range bodies {
		var buf bytes.Buffer
		buf.WriteByte('[')
		for j := range perRequest {
			if j > 0 {
				buf.WriteByte(',')
			}
			buf.Write(testenv.BenchEvent(run+"-", i*perRequest+j))
		}
		buf.WriteByte(']')
		bodies[i] = buf.Bytes()
	}
	return bodies
}

// recordBatches are the records requestBodies' events become, keyed as
// ingest keys them (by subject).
func recordBatches(run string, count, perRequest int) [][]kafka.Message {
	batches := make([][]kafka.Message, count)
	for i := range batches {
		batches[i] = make([]kafka.Message, perRequest)
		for j := range batches[i] {
			n := i*perRequest + j
			batches[i][j] = kafka.Message{Key: fmt.Appendf(nil, "customer-%d", n%997), Value: testenv.BenchEvent(run+"-", n)}
		}
	}
	return batches
}

// backlogs are the topics the benchmarks filled, by size: a backlog is
// produced once and drained by every benchmark of the run that wants that
// size; TestMain deletes them when the run ends.
var backlogs struct {
	mu     sync.Mutex
	topics map[int]string
}

// backlogTopic returns a 6-partition events topic holding events events,
// producing it on first use.
func backlogTopic(b *testing.B, events int) string {
	b.Helper()
	svc := requireServices(b)
	backlogs.mu.Lock()
	defer backlogs.mu.Unlock()
	if topic, ok := backlogs.topics[events]; ok {
		return topic
	}
	topic := fmt.Sprintf("sluice.bench.backlog-%d-%s", events, randomID())
	cluster := kafkaadmin.New(kafkaadmin.Config{Brokers: []string{svc.kafka}})
	defer cluster.Close()
	ctx := context.Background()
	// A day's retention: a backlog must outlive the longest bench run.
	if err := cluster.EnsureTopics(ctx, 1, kafkaadmin.EventsTopicSpec(topic, 6, 24*time.Hour)); err != nil {
		b.Fatal(err)
	}
	if backlogs.topics == nil {
		backlogs.topics = map[int]string{}
	}
	backlogs.topics[events] = topic // from here on, TestMain deletes it
	started := time.Now()
	testenv.WriteBacklog(b, cluster, topic, randomID()+"-", events)
	b.Logf("backlog: %d events in 6 partitions of %s, produced in %v", events, topic, time.Since(started).Round(time.Millisecond))
	return topic
}

// deleteBacklogTopics deletes the topics backlogTopic produced; TestMain
// calls it once the run ends.
func deleteBacklogTopics() {
	backlogs.mu.Lock()
	defer backlogs.mu.Unlock()
	broker := os.Getenv("SLUICE_TEST_KAFKA")
	if len(backlogs.topics) == 0 || broker == "" {
		return
	}
	var topics []string
	for _, t := range backlogs.topics {
		topics = append(topics, t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 20 * time.Second, Transport: tr}
	if _, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics}); err != nil {
		fmt.Fprintf(os.Stderr, "deleting the benchmarks' backlog topics %v: %v\n", topics, err)
	}
}

// benchBin is sluice built without the race detector, once per run.
var benchBin struct {
	once sync.Once
	path string
	err  error
}

// benchBinary returns the binary the benchmarks run: built without the race
// detector, which would multiply the time and memory they measure.
func benchBinary(b *testing.B) string {
	b.Helper()
	benchBin.once.Do(func() {
		path := filepath.Join(binDir, "sluice-bench")
		out, err := exec.Command("go", "build", "-o", path, "../cmd/sluice").CombinedOutput()
		if err != nil {
			benchBin.err = fmt.Errorf("building sluice: %v\n%s", err, out)
			return
		}
		benchBin.path = path
	})
	if benchBin.err != nil {
		b.Fatal(benchBin.err)
	}
	return benchBin.path
}

// peakRSSMiB is the peak resident memory of a running process so far
// (VmHWM), in MiB.
func peakRSSMiB(b *testing.B, pr *proc) float64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pr.cmd.Process.Pid))
	if err != nil {
		b.Fatalf("%s: %v (peak RSS is read from Linux's /proc)", pr.name, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kib, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatalf("%s: VmHWM %q: %v", pr.name, rest, err)
			}
			return kib / 1024
		}
	}
	b.Fatalf("%s: no VmHWM in /proc/%d/status", pr.name, pr.cmd.Process.Pid)
	return 0
}

// backlogSizes are BenchmarkDrainBacklog's backlogs (SLUICE_BENCH_BACKLOGS).
func backlogSizes(b *testing.B) []int {
	b.Helper()
	v := os.Getenv("SLUICE_BENCH_BACKLOGS")
	if v == "" {
		return []int{100_000, 1_000_000, 5_000_000}
	}
	var sizes []int
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			b.Fatalf("SLUICE_BENCH_BACKLOGS=%q: want positive integers separated by commas", v)
		}
		sizes = append(sizes, n)
	}
	return sizes
}
