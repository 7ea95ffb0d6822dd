package main

import (
	"bufio"
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type loadgenOptions struct {
	url, key, source, acceptedOut string
	summaryOut, timelineOut       string
	events, batch, concurrency    int
	retries                       int
	timeout                       time.Duration
	rate, duplicates              float64
	jsonOut, quiet                bool
}

// loadgenSummary is what loadgen prints (as text, or with --json as this).
type loadgenSummary struct {
	Source          string  `json:"source"`
	Sent            int     `json:"sent"`
	Duplicates      int     `json:"duplicates"`
	Accepted        int     `json:"accepted"`
	UniqueAccepted  int     `json:"unique_accepted"`
	Rejected        int     `json:"rejected"`
	Failed          int     `json:"failed"`
	Requests        int     `json:"requests"`
	Retries         int     `json:"retries"`
	Non2xx          int     `json:"non_2xx_answers"`
	Timeouts        int     `json:"timeouts"`
	ElapsedSeconds  float64 `json:"elapsed_seconds"`
	EventsPerSecond float64 `json:"events_per_second"`
	LatencyP50Ms    float64 `json:"latency_p50_ms"`
	LatencyP95Ms    float64 `json:"latency_p95_ms"`
	LatencyP99Ms    float64 `json:"latency_p99_ms"`
	LatencyMaxMs    float64 `json:"latency_max_ms"`
}

func runLoadgen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("loadgen", "loadgen [--events N] [--rate R] [--duplicates F] [flags]", stderr)
	var o loadgenOptions
	fs.StringVar(&o.url, "url", "", "ingest endpoint (default: http://<ingest.listen>/v1/events from the configuration)")
	fs.StringVar(&o.key, "key", os.Getenv("SLUICE_LOADGEN_KEY"), "bearer key (env SLUICE_LOADGEN_KEY; default: the first ingest key of the configuration)")
	fs.IntVar(&o.events, "events", 10000, "events to send, duplicates included")
	fs.Float64Var(&o.rate, "rate", 0, "events per second (0: as fast as the server answers)")
	fs.Float64Var(&o.duplicates, "duplicates", 0.1, "share of events that repeat an earlier event's (source, id), 0 to 0.9")
	fs.IntVar(&o.batch, "batch", 100, "events per request")
	fs.IntVar(&o.concurrency, "concurrency", 4, "requests in flight at once")
	fs.IntVar(&o.retries, "retries", 20, "attempts at a request answered 429, 503 or not at all, with backoff")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for an answer before counting a timeout and retrying")
	fs.StringVar(&o.source, "source", "", "CloudEvents source of every event (default: loadgen/<random>, unique per run)")
	fs.StringVar(&o.acceptedOut, "accepted-out", "", "write the id of every event that got 202, one per line, to this file")
	fs.BoolVar(&o.jsonOut, "json", false, "print the summary as JSON")
	fs.StringVar(&o.summaryOut, "summary-out", "", "also write the summary as JSON to this file")
	fs.StringVar(&o.timelineOut, "timeline-out", "", "write, per second of the run, the answers by outcome (CSV: second,accepted,non_2xx,timeouts,errors)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress on stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case o.events < 1:
		return fmt.Errorf("%w: --events must be at least 1", errUsage)
	case o.batch < 1 || o.concurrency < 1:
		return fmt.Errorf("%w: --batch and --concurrency must be at least 1", errUsage)
	case o.duplicates < 0 || o.duplicates > 0.9:
		return fmt.Errorf("%w: --duplicates must be within 0 and 0.9", errUsage)
	case o.rate < 0:
		return fmt.Errorf("%w: --rate must not be negative", errUsage)
	}
	if o.url == "" || o.key == "" {
		cfg, err := loadConfig(*cfgPath, os.Getenv)
		if err != nil {
			return fmt.Errorf("%w (or give --url and --key)", err)
		}
		if o.url == "" {
			o.url = "http://" + cfg.Ingest.Listen + "/v1/events"
		}
		if o.key == "" && len(cfg.Ingest.Keys) > 0 {
			o.key = cfg.Ingest.Keys[0]
		}
	}
	if o.source == "" {
		var b [4]byte
		_, _ = cryptorand.Read(b[:])
		o.source = "loadgen/" + hex.EncodeToString(b[:])
	}
	sum, accepted, timeline, err := loadgen(ctx, o, stderr)
	if err != nil {
		return err
	}
	if o.timelineOut != "" {
		if err := writeLines(o.timelineOut, timeline.csv()); err != nil {
			return err
		}
	}
	if o.acceptedOut != "" {
		if err := writeLines(o.acceptedOut, accepted); err != nil {
			return err
		}
	}
	summaryJSON, _ := json.MarshalIndent(sum, "", "  ")
	summaryJSON = append(summaryJSON, '\n')
	if o.summaryOut != "" {
		if err := os.WriteFile(o.summaryOut, summaryJSON, 0o644); err != nil {
			return err
		}
	}
	if o.jsonOut {
		_, err := stdout.Write(summaryJSON)
		return err
	}
	fmt.Fprintf(stdout, `loadgen summary (source %s)
  sent             %d events (%d deliberate duplicates) in %d requests
  accepted (202)   %d events, %d unique
  rejected (4xx)   %d events
  failed           %d events (no 202 after %d attempts)
  retried          %d requests, %d non-2xx answers, %d timeouts
  throughput       %.0f events/s over %.2fs
  request latency  p50 %.1fms  p95 %.1fms  p99 %.1fms  max %.1fms
`, sum.Source, sum.Sent, sum.Duplicates, sum.Requests, sum.Accepted, sum.UniqueAccepted, sum.Rejected,
		sum.Failed, o.retries, sum.Retries, sum.Non2xx, sum.Timeouts, sum.EventsPerSecond, sum.ElapsedSeconds,
		sum.LatencyP50Ms, sum.LatencyP95Ms, sum.LatencyP99Ms, sum.LatencyMaxMs)
	if sum.Failed > 0 || sum.Rejected > 0 {
		return fmt.Errorf("%d events failed and %d were rejected", sum.Failed, sum.Rejected)
	}
	return nil
}

type plannedEvent struct {
	id  int
	dup bool
}

// plan lays out the events: ids 0…unique-1 in order, with duplicates of
// earlier ids scattered among them, so that most duplicates travel in a later
// request than their original.
func plan(n int, dupShare float64) []plannedEvent {
	dups := int(float64(n) * dupShare)
	unique := n - dups
	out := make([]plannedEvent, 0, n)
	next := 0
	for len(out) < n {
		if next < unique && (next == 0 || rand.Float64() >= dupShare || dups == 0) {
			out = append(out, plannedEvent{id: next})
			next++
			continue
		}
		if dups > 0 && next > 0 {
			out = append(out, plannedEvent{id: rand.IntN(next), dup: true})
			dups--
			continue
		}
		out = append(out, plannedEvent{id: next})
		next++
	}
	return out
}

// timeline counts answers per second of the run, by outcome.
type timeline struct {
	mu      sync.Mutex
	start   time.Time
	buckets [][4]int // accepted, non-2xx, timeouts, other errors
}

func (t *timeline) add(at time.Time, outcome int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sec := int(at.Sub(t.start) / time.Second)
	for len(t.buckets) <= sec {
		t.buckets = append(t.buckets, [4]int{})
	}
	t.buckets[sec][outcome]++
}

func (t *timeline) csv() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := []string{"second,accepted,non_2xx,timeouts,errors"}
	for i, b := range t.buckets {
		lines = append(lines, fmt.Sprintf("%d,%d,%d,%d,%d", i, b[0], b[1], b[2], b[3]))
	}
	return lines
}

func loadgen(ctx context.Context, o loadgenOptions, stderr io.Writer) (loadgenSummary, []string, *timeline, error) {
	events := plan(o.events, o.duplicates)
	type request struct {
		body []byte
		ids  []int
	}
	var reqs []request
	for i := 0; i < len(events); i += o.batch {
		chunk := events[i:min(i+o.batch, len(events))]
		var buf bytes.Buffer
		buf.WriteByte('[')
		ids := make([]int, len(chunk))
		for j, e := range chunk {
			if j > 0 {
				buf.WriteByte(',')
			}
			ids[j] = e.id
			fmt.Fprintf(&buf, `{"specversion":"1.0","id":"%d","source":%q,"type":"sluice.loadgen.v1","subject":"customer-%d","time":%q,"datacontenttype":"application/json","data":{"n":%d,"amount":%d}}`,
				e.id, o.source, e.id%997, time.Now().UTC().Format(time.RFC3339Nano), e.id, e.id%1000)
		}
		buf.WriteByte(']')
		reqs = append(reqs, request{body: buf.Bytes(), ids: ids})
	}

	client := &http.Client{Timeout: o.timeout}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		accepted  = map[int]bool{}
		sum       = loadgenSummary{Source: o.source, Requests: len(reqs)}
		sentSoFar atomic.Int64
	)
	for _, e := range events {
		if e.dup {
			sum.Duplicates++
		}
	}
	start := time.Now()
	tl := &timeline{start: start}
	work := make(chan int)
	var wg sync.WaitGroup
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				r := reqs[i]
				code, lat, retries, non2xx, timeouts := sendWithRetry(ctx, client, o, r.body, tl)
				mu.Lock()
				latencies = append(latencies, lat...)
				sum.Retries += retries
				sum.Non2xx += non2xx
				sum.Timeouts += timeouts
				switch {
				case code == http.StatusAccepted:
					sum.Accepted += len(r.ids)
					for _, id := range r.ids {
						accepted[id] = true
					}
				case code >= 400 && code < 500 && code != http.StatusTooManyRequests:
					sum.Rejected += len(r.ids)
				default:
					sum.Failed += len(r.ids)
				}
				mu.Unlock()
				sentSoFar.Add(int64(len(r.ids)))
			}
		}()
	}
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				if !o.quiet {
					n := sentSoFar.Load()
					fmt.Fprintf(stderr, "loadgen: %d/%d events, %.0f events/s\n", n, o.events, float64(n)/time.Since(start).Seconds())
				}
			}
		}
	}()
feed:
	for i := range reqs {
		if o.rate > 0 { // pace by events, not requests
			due := start.Add(time.Duration(float64(i*o.batch) / o.rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					break feed
				case <-time.After(d):
				}
			}
		}
		select {
		case <-ctx.Done():
			break feed
		case work <- i:
		}
	}
	close(work)
	wg.Wait()
	close(stopProgress)
	<-progressDone

	elapsed := time.Since(start)
	sum.Sent = int(sentSoFar.Load())
	sum.UniqueAccepted = len(accepted)
	sum.ElapsedSeconds = elapsed.Seconds()
	sum.EventsPerSecond = float64(sum.Sent) / elapsed.Seconds()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[min(int(p*float64(len(latencies))), len(latencies)-1)].Microseconds()) / 1000
	}
	sum.LatencyP50Ms, sum.LatencyP95Ms, sum.LatencyP99Ms, sum.LatencyMaxMs = pct(.50), pct(.95), pct(.99), pct(1)
	ids := make([]string, 0, len(accepted))
	for id := range accepted {
		ids = append(ids, strconv.Itoa(id))
	}
	if ctx.Err() != nil {
		return sum, ids, tl, errors.New("interrupted")
	}
	return sum, ids, tl, nil
}

// sendWithRetry posts body until it is answered with something other than
// 429, 503 or a transport error, or attempts run out. It returns the last
// status (0 for a transport error) and every attempt's latency.
func sendWithRetry(ctx context.Context, client *http.Client, o loadgenOptions, body []byte, tl *timeline) (code int, lats []time.Duration, retries, non2xx, timeouts int) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url, bytes.NewReader(body))
		if err != nil {
			return 0, lats, retries, non2xx, timeouts
		}
		req.Header.Set("Content-Type", "application/cloudevents-batch+json")
		req.Header.Set("Authorization", "Bearer "+o.key)
		t0 := time.Now()
		resp, err := client.Do(req)
		lats = append(lats, time.Since(t0))
		code = 0
		var netErr interface{ Timeout() bool }
		switch {
		case err != nil && errors.As(err, &netErr) && netErr.Timeout():
			timeouts++
			tl.add(time.Now(), 2)
		case err != nil:
			tl.add(time.Now(), 3)
		case resp.StatusCode/100 == 2:
			tl.add(time.Now(), 0)
		default:
			tl.add(time.Now(), 1)
		}
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			code = resp.StatusCode
			if code/100 != 2 {
				non2xx++
			}
			if code != http.StatusTooManyRequests && code != http.StatusServiceUnavailable {
				return code, lats, retries, non2xx, timeouts
			}
			if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
				backoff = max(backoff, time.Duration(s)*time.Second)
			}
		}
		if attempt >= o.retries || ctx.Err() != nil {
			return code, lats, retries, non2xx, timeouts
		}
		retries++
		select {
		case <-ctx.Done():
			return code, lats, retries, non2xx, timeouts
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func writeLines(path string, lines []string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
