package main

import (
	"bufio"
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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/producer/client"
)

type loadgenOptions struct {
	url, key, source, acceptedOut string
	summaryOut, timelineOut       string
	events, batch, concurrency    int
	retries                       int
	timeout                       time.Duration
	rate, duplicates              float64
	jsonOut, quiet, shop          bool
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
	o, cfgPath, err := parseLoadgenFlags(args, stderr)
	if err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return err
	}
	if err := o.fillDefaults(cfgPath); err != nil {
		return err
	}
	sum, accepted, timeline, err := loadgen(ctx, o, stderr)
	if err != nil {
		return err
	}
	summaryJSON, err := writeLoadgenFiles(o, sum, accepted, timeline)
	if err != nil {
		return err
	}
	if o.jsonOut {
		_, err := stdout.Write(summaryJSON)
		return err
	}
	printLoadgenSummary(stdout, sum, o.retries)
	if sum.Failed > 0 || sum.Rejected > 0 {
		return fmt.Errorf("%d events failed and %d were rejected", sum.Failed, sum.Rejected)
	}
	return nil
}

// parseLoadgenFlags parses loadgen's command line. It returns the options as
// given and the path of the configuration file.
func parseLoadgenFlags(args []string, stderr io.Writer) (loadgenOptions, string, error) {
	fs, cfgPath := newFlags("loadgen", "loadgen [--events N] [--rate R] [--duplicates F] [flags]", stderr)
	var o loadgenOptions
	fs.StringVar(&o.url, "url", "", "ingest endpoint (default: http://<ingest.listen>/v1/events from the configuration)")
	// The environment is read after parsing: a default would print the key in --help.
	fs.StringVar(&o.key, "key", "", "bearer key (default: $SLUICE_LOADGEN_KEY, else the first ingest key of the configuration)")
	fs.IntVar(&o.events, "events", 10000, "events to send, duplicates included")
	fs.Float64Var(&o.rate, "rate", 0, "events per second (0: as fast as the server answers)")
	fs.Float64Var(&o.duplicates, "duplicates", 0.1, "share of events that repeat an earlier event's (source, id), 0 to 0.9")
	fs.IntVar(&o.batch, "batch", 100, "events per request")
	fs.IntVar(&o.concurrency, "concurrency", 4, "requests in flight at once")
	fs.IntVar(&o.retries, "retries", 20, "attempts at a request answered 408, 429, 502, 503, 504 or not at all, with backoff (never sooner than Retry-After)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for an answer before counting a timeout and retrying")
	fs.StringVar(&o.source, "source", "", "CloudEvents source of every event (default: loadgen/<random>, unique per run)")
	fs.StringVar(&o.acceptedOut, "accepted-out", "", "write the id of every event that got 202, one per line, to this file")
	fs.BoolVar(&o.jsonOut, "json", false, "print the summary as JSON")
	fs.StringVar(&o.summaryOut, "summary-out", "", "also write the summary as JSON to this file")
	fs.StringVar(&o.timelineOut, "timeline-out", "", "write, per second of the run, the answers by outcome (CSV: second,accepted,non_2xx,timeouts,errors)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress on stderr")
	fs.BoolVar(&o.shop, "shop", false, "publish the customer events of deploy/examples/shop (registered, renamed, email_changed) instead of generic ones")
	if err := parseFlags(fs, args); err != nil {
		return loadgenOptions{}, "", err
	}
	return o, *cfgPath, nil
}

// validate reports the first option out of its range, as a usage error.
func (o loadgenOptions) validate() error {
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
	return nil
}

// fillDefaults sets what the command line left out: the URL and key from the
// configuration file at cfgPath (read only when one of them is missing), and
// a source unique to this run.
func (o *loadgenOptions) fillDefaults(cfgPath string) error {
	if o.key == "" {
		o.key = os.Getenv("SLUICE_LOADGEN_KEY")
	}
	if o.url == "" || o.key == "" {
		cfg, err := loadConfig(cfgPath, os.Getenv)
		if err != nil {
			return fmt.Errorf("%w (or give --url and --key)", err)
		}
		if o.url == "" {
			o.url = "http://" + cfg.Ingest.Listen + "/v1/events"
		}
		for _, k := range cfg.Ingest.Keys {
			if o.key == "" && k.Key != "" { // a key given as its digest cannot be sent
				o.key = k.Key
			}
		}
	}
	if o.source == "" {
		var b [4]byte
		_, _ = cryptorand.Read(b[:])
		o.source = "loadgen/" + hex.EncodeToString(b[:])
	}
	return nil
}

// writeLoadgenFiles writes the files the options ask for: the timeline, the
// accepted ids and the summary. It returns the summary as indented JSON, the
// same bytes --json prints.
func writeLoadgenFiles(o loadgenOptions, sum loadgenSummary, accepted []string, tl *timeline) ([]byte, error) {
	if o.timelineOut != "" {
		if err := writeLines(o.timelineOut, tl.csv()); err != nil {
			return nil, err
		}
	}
	if o.acceptedOut != "" {
		if err := writeLines(o.acceptedOut, accepted); err != nil {
			return nil, err
		}
	}
	summaryJSON, _ := json.MarshalIndent(sum, "", "  ")
	summaryJSON = append(summaryJSON, '\n')
	if o.summaryOut != "" {
		if err := os.WriteFile(o.summaryOut, summaryJSON, 0o644); err != nil {
			return nil, err
		}
	}
	return summaryJSON, nil
}

// printLoadgenSummary prints the summary as text; retries is the --retries
// the failed events ran out of.
func printLoadgenSummary(w io.Writer, sum loadgenSummary, retries int) {
	fmt.Fprintf(w, `loadgen summary (source %s)
  sent             %d events (%d deliberate duplicates) in %d requests
  accepted (202)   %d events, %d unique
  rejected (4xx)   %d events
  failed           %d events (no 202 after %d attempts)
  retried          %d requests, %d non-2xx answers, %d timeouts
  throughput       %.0f events/s over %.2fs
  request latency  p50 %.1fms  p95 %.1fms  p99 %.1fms  max %.1fms
`, sum.Source, sum.Sent, sum.Duplicates, sum.Requests, sum.Accepted, sum.UniqueAccepted, sum.Rejected,
		sum.Failed, retries, sum.Retries, sum.Non2xx, sum.Timeouts, sum.EventsPerSecond, sum.ElapsedSeconds,
		sum.LatencyP50Ms, sum.LatencyP95Ms, sum.LatencyP99Ms, sum.LatencyMaxMs)
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

// outcome is how one attempt at a request was answered, as the timeline
// counts it.
type outcome int

const (
	outcomeAccepted outcome = iota // a 2xx answer (the ingest API's is 202 Accepted)
	outcomeNon2xx                  // an answer other than 2xx
	outcomeTimeout                 // no answer within --timeout
	outcomeError                   // no answer, for any other reason (refused connection, …)
	numOutcomes                    // the number of outcomes, not one
)

// String returns the name of the outcome's column in the timeline CSV.
func (o outcome) String() string {
	switch o {
	case outcomeAccepted:
		return "accepted"
	case outcomeNon2xx:
		return "non_2xx"
	case outcomeTimeout:
		return "timeouts"
	case outcomeError:
		return "errors"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// classifyAttempt returns the outcome of an attempt as the client reported
// it.
func classifyAttempt(a client.Attempt) outcome {
	switch {
	case a.StatusCode/100 == 2:
		return outcomeAccepted
	case a.StatusCode != 0:
		return outcomeNon2xx
	case a.Timeout:
		return outcomeTimeout
	default:
		return outcomeError
	}
}

// timeline counts answers per second of the run, by outcome.
type timeline struct {
	mu      sync.Mutex
	start   time.Time
	buckets [][numOutcomes]int
}

func (t *timeline) add(at time.Time, o outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sec := int(at.Sub(t.start) / time.Second)
	for len(t.buckets) <= sec {
		t.buckets = append(t.buckets, [numOutcomes]int{})
	}
	t.buckets[sec][o]++
}

// csv returns the timeline as CSV lines, a header first
// (second,accepted,non_2xx,timeouts,errors), then one line per second.
func (t *timeline) csv() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	header := []string{"second"}
	for o := range numOutcomes {
		header = append(header, o.String())
	}
	lines := []string{strings.Join(header, ",")}
	for i, b := range t.buckets {
		row := []string{strconv.Itoa(i)}
		for _, n := range b {
			row = append(row, strconv.Itoa(n))
		}
		lines = append(lines, strings.Join(row, ","))
	}
	return lines
}

// loadgenRequest is one request of a run: its events and their ids.
type loadgenRequest struct {
	events []client.Event
	ids    []int
}

// buildRequests cuts the planned events into requests of o.batch events,
// every one from o.source and stamped with the current time.
func buildRequests(events []plannedEvent, o loadgenOptions) []loadgenRequest {
	var reqs []loadgenRequest
	for i := 0; i < len(events); i += o.batch {
		chunk := events[i:min(i+o.batch, len(events))]
		r := loadgenRequest{events: make([]client.Event, len(chunk)), ids: make([]int, len(chunk))}
		for j, e := range chunk {
			r.ids[j] = e.id
			if o.shop {
				r.events[j] = shopEvent(e, o.source)
			} else {
				r.events[j] = genericEvent(e, o.source)
			}
		}
		reqs = append(reqs, r)
	}
	return reqs
}

// genericEvent is planned event e as loadgen's own type of event.
func genericEvent(e plannedEvent, source string) client.Event {
	return client.Event{ID: strconv.Itoa(e.id), Source: source, Type: "sluice.loadgen.v1",
		Subject: fmt.Sprintf("customer-%d", e.id%997), Time: time.Now().UTC(), DataContentType: "application/json",
		Data: fmt.Appendf(nil, `{"n":%d,"amount":%d}`, e.id, e.id%1000)}
}

// shopEvents are the kinds of event of the shop example, in the order each
// customer goes through them.
var shopEvents = []struct{ typ, data string }{
	{"customer.registered", `{"name":"Customer %[1]d","email":"c%[1]d@example.com"}`},
	{"customer.renamed", `{"name":"Customer %[1]d, renamed"}`},
	{"customer.email_changed", `{"email":"c%[1]d@mail.example.org"}`},
}

// shopEvent is genericEvent for the shop example: event id i is about
// customer i mod 997, and each customer's events cycle through shopEvents.
func shopEvent(e plannedEvent, source string) client.Event {
	kind := shopEvents[(e.id/997)%len(shopEvents)]
	return client.Event{ID: strconv.Itoa(e.id), Source: source, Type: kind.typ,
		Subject: fmt.Sprintf("customer-%d", e.id%997), Time: time.Now().UTC(), Data: fmt.Appendf(nil, kind.data, e.id)}
}

func countDuplicates(events []plannedEvent) int {
	n := 0
	for _, e := range events {
		if e.dup {
			n++
		}
	}
	return n
}

// loadgenRun is the state of a run that its workers share.
type loadgenRun struct {
	o         loadgenOptions
	pub       *client.Client
	reqs      []loadgenRequest
	start     time.Time
	tl        *timeline
	sentSoFar atomic.Int64

	mu        sync.Mutex
	latencies []time.Duration
	accepted  map[int]bool
	sum       loadgenSummary
}

func loadgen(ctx context.Context, o loadgenOptions, stderr io.Writer) (loadgenSummary, []string, *timeline, error) {
	events := plan(o.events, o.duplicates)
	reqs := buildRequests(events, o)
	run := &loadgenRun{
		o:        o,
		reqs:     reqs,
		accepted: map[int]bool{},
		sum:      loadgenSummary{Source: o.source, Requests: len(reqs), Duplicates: countDuplicates(events)},
	}
	pub, err := client.New(client.Config{URL: o.url, Key: o.key, MaxEvents: o.batch, MaxInFlight: o.concurrency,
		AttemptTimeout: o.timeout, MaxAttempts: max(o.retries, 1),
		// --retries is loadgen's one bound: a broker restart under test may
		// take minutes of 503s, and each wait is at most 5s or a Retry-After.
		MaxWait:   time.Duration(max(o.retries, 1)) * time.Minute,
		OnAttempt: run.observe})
	switch {
	case o.key == "":
		return loadgenSummary{}, nil, nil, fmt.Errorf("%w: no key to send: give --key or $SLUICE_LOADGEN_KEY (the configuration's keys are digests only)", errUsage)
	case err != nil:
		return loadgenSummary{}, nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	run.pub = pub
	run.start = time.Now()
	run.tl = &timeline{start: run.start}

	work := make(chan int)
	var wg sync.WaitGroup
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run.work(ctx, work)
		}()
	}
	stopProgress := run.reportProgress(stderr)
	run.feed(ctx, work)
	close(work)
	wg.Wait()
	stopProgress()

	sum := run.summarize(time.Since(run.start))
	ids := run.acceptedIDs()
	if ctx.Err() != nil {
		return sum, ids, run.tl, errors.New("interrupted")
	}
	return sum, ids, run.tl, nil
}

// work sends the requests whose indexes come from work, until it is closed.
func (run *loadgenRun) work(ctx context.Context, work <-chan int) {
	for i := range work {
		r := run.reqs[i]
		n, err := run.pub.Publish(ctx, r.events)
		run.record(r, n, err)
		run.sentSoFar.Add(int64(len(r.ids)))
	}
}

// observe counts one attempt at a request, retried ones included: its
// latency, and its outcome in the timeline and the summary.
func (run *loadgenRun) observe(a client.Attempt) {
	oc := classifyAttempt(a)
	run.tl.add(time.Now(), oc)
	run.mu.Lock()
	defer run.mu.Unlock()
	run.latencies = append(run.latencies, a.Duration)
	if a.Number > 1 {
		run.sum.Retries++
	}
	if oc == outcomeNon2xx {
		run.sum.Non2xx++
	}
	if oc == outcomeTimeout {
		run.sum.Timeouts++
	}
}

// record adds the result of request r to the summary: its first n events
// were accepted; the others count as rejected when the answer refused them
// (a 4xx other than 408 and 429, which are retried), else as failed.
func (run *loadgenRun) record(r loadgenRequest, n int, err error) {
	run.mu.Lock()
	defer run.mu.Unlock()
	run.sum.Accepted += n
	for _, id := range r.ids[:n] {
		run.accepted[id] = true
	}
	if rest := len(r.ids) - n; rest > 0 && refused(err) {
		run.sum.Rejected += rest
	} else {
		run.sum.Failed += rest
	}
}

// refused reports whether err says the request itself was at fault, so
// that sending it again could not help.
func refused(err error) bool {
	var rej *client.RejectedError
	var st *client.StatusError
	switch {
	case errors.As(err, &rej), errors.Is(err, client.ErrEventTooLarge), errors.Is(err, client.ErrInvalidEvent):
		return true
	case errors.As(err, &st):
		return st.StatusCode/100 == 4 && st.StatusCode != http.StatusTooManyRequests && st.StatusCode != http.StatusRequestTimeout
	}
	return false
}

// reportProgress prints, every second and unless --quiet, how many events
// were sent so far. The function it returns stops it, and returns once it has
// stopped.
func (run *loadgenRun) reportProgress(stderr io.Writer) (stop func()) {
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
				if !run.o.quiet {
					n := run.sentSoFar.Load()
					fmt.Fprintf(stderr, "loadgen: %d/%d events, %.0f events/s\n", n, run.o.events, float64(n)/time.Since(run.start).Seconds())
				}
			}
		}
	}()
	return func() {
		close(stopProgress)
		<-progressDone
	}
}

// feed hands the index of every request to the workers in order, paced to
// --rate events per second if set, until all are handed out or ctx is done.
func (run *loadgenRun) feed(ctx context.Context, work chan<- int) {
	for i := range run.reqs {
		if run.o.rate > 0 { // pace by events, not requests
			due := run.start.Add(time.Duration(float64(i*run.o.batch) / run.o.rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case work <- i:
		}
	}
}

// summarize completes the summary once every worker is done, elapsed after
// the start.
func (run *loadgenRun) summarize(elapsed time.Duration) loadgenSummary {
	sum := run.sum
	sum.Sent = int(run.sentSoFar.Load())
	sum.UniqueAccepted = len(run.accepted)
	sum.ElapsedSeconds = elapsed.Seconds()
	sum.EventsPerSecond = float64(sum.Sent) / elapsed.Seconds()
	slices.Sort(run.latencies)
	sum.LatencyP50Ms = latencyPercentileMs(run.latencies, .50)
	sum.LatencyP95Ms = latencyPercentileMs(run.latencies, .95)
	sum.LatencyP99Ms = latencyPercentileMs(run.latencies, .99)
	sum.LatencyMaxMs = latencyPercentileMs(run.latencies, 1)
	return sum
}

// latencyPercentileMs returns the p-quantile (0 to 1) of sorted, in
// milliseconds; 0 when sorted is empty.
func latencyPercentileMs(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[min(int(p*float64(len(sorted))), len(sorted)-1)].Microseconds()) / 1000
}

// acceptedIDs returns the ids of the events that got 202, in no order.
func (run *loadgenRun) acceptedIDs() []string {
	ids := make([]string, 0, len(run.accepted))
	for id := range run.accepted {
		ids = append(ids, strconv.Itoa(id))
	}
	return ids
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
