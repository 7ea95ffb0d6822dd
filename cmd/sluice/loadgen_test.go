package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/producer/client"
)

func TestTimelineCSV(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	tl := &timeline{start: start}
	tl.add(start, outcomeAccepted)
	tl.add(start.Add(300*time.Millisecond), outcomeAccepted)
	tl.add(start.Add(900*time.Millisecond), outcomeNon2xx)
	tl.add(start.Add(2*time.Second), outcomeTimeout)
	tl.add(start.Add(2500*time.Millisecond), outcomeError)
	want := []string{
		"second,accepted,non_2xx,timeouts,errors",
		"0,2,1,0,0",
		"1,0,0,0,0",
		"2,0,0,1,1",
	}
	if got := tl.csv(); !slices.Equal(got, want) {
		t.Fatalf("csv:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := (&timeline{}).csv(); !slices.Equal(got, want[:1]) {
		t.Fatalf("an empty timeline: %q", got)
	}
}

func TestClassifyAttempt(t *testing.T) {
	cases := []struct {
		name string
		a    client.Attempt
		want outcome
	}{
		{"202", client.Attempt{StatusCode: http.StatusAccepted}, outcomeAccepted},
		{"200", client.Attempt{StatusCode: http.StatusOK}, outcomeAccepted},
		{"503", client.Attempt{StatusCode: http.StatusServiceUnavailable}, outcomeNon2xx},
		{"400", client.Attempt{StatusCode: http.StatusBadRequest}, outcomeNon2xx},
		{"a timeout", client.Attempt{Err: context.DeadlineExceeded, Timeout: true}, outcomeTimeout},
		{"another transport error", client.Attempt{Err: errors.New("connection refused")}, outcomeError},
	}
	for _, c := range cases {
		if got := classifyAttempt(c.a); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if got := outcome(7).String(); got != "outcome(7)" {
		t.Errorf("outcome(7).String() = %q", got)
	}
}

func TestRefused(t *testing.T) {
	for err, want := range map[error]bool{
		&client.RejectedError{StatusCode: 400}:                          true,
		&client.StatusError{StatusCode: 401}:                            true,
		&client.StatusError{StatusCode: 413}:                            true,
		fmt.Errorf("event 3: %w", client.ErrEventTooLarge):              true,
		fmt.Errorf("gave up: %w", &client.StatusError{StatusCode: 429}): false,
		&client.StatusError{StatusCode: 408}:                            false,
		&client.StatusError{StatusCode: 503}:                            false,
		context.Canceled:                                                false,
		errors.New("connection refused"):                                false,
	} {
		if got := refused(err); got != want {
			t.Errorf("refused(%v) = %v", err, got)
		}
	}
}

// loadgenTestServer answers by the ids of a request: the one with id 4 is
// always refused (400), the one with id 6 gets 503 once and then 202, the
// one with id 8 always gets 503, the one with id 10 never gets an answer in
// time, and every other one is accepted.
func loadgenTestServer(t *testing.T) *httptest.Server {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer test-key" || r.Header.Get("Content-Type") != "application/cloudevents-batch+json" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var events []struct{ ID string }
		if err := json.Unmarshal(body, &events); err != nil || len(events) == 0 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		first := events[0].ID
		mu.Lock()
		seen[first]++
		n := seen[first]
		mu.Unlock()
		switch {
		case first == "4", first == "6" && n == 1, first == "8":
			if first == "4" {
				w.WriteHeader(http.StatusBadRequest)
			} else {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		case first == "10":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		default:
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprintf(w, `{"accepted":%d}`, len(events))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestLoadgenCountsEveryOutcome(t *testing.T) {
	srv := loadgenTestServer(t)
	dir := t.TempDir()
	out := func(name string) string { return filepath.Join(dir, name) }
	args := []string{"--url", srv.URL, "--key", "test-key", "--events", "12", "--batch", "2", "--duplicates", "0",
		"--concurrency", "2", "--retries", "2", "--timeout", "200ms", "--source", "loadgen/test", "--json", "--quiet",
		"--summary-out", out("summary.json"), "--timeline-out", out("timeline.csv"), "--accepted-out", out("accepted.txt")}
	var stdout, stderr bytes.Buffer
	if err := runLoadgen(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("%v (stderr %s)", err, stderr.String())
	}

	var sum loadgenSummary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("--json: %v: %s", err, stdout.String())
	}
	if file, _ := os.ReadFile(out("summary.json")); !bytes.Equal(file, stdout.Bytes()) {
		t.Fatalf("--summary-out differs from --json:\n%s\n%s", file, stdout.Bytes())
	}
	want := loadgenSummary{Source: "loadgen/test", Sent: 12, Accepted: 6, UniqueAccepted: 6, Rejected: 2, Failed: 4,
		Requests: 6, Retries: 3, Non2xx: 4, Timeouts: 2}
	got := sum
	got.ElapsedSeconds, got.EventsPerSecond = 0, 0
	got.LatencyP50Ms, got.LatencyP95Ms, got.LatencyP99Ms, got.LatencyMaxMs = 0, 0, 0, 0
	if got != want {
		t.Fatalf("summary %+v, want %+v", got, want)
	}
	if sum.LatencyMaxMs < 200 || sum.LatencyP50Ms > sum.LatencyMaxMs {
		t.Fatalf("latencies p50 %v max %v: the timeouts should be the slowest attempts", sum.LatencyP50Ms, sum.LatencyMaxMs)
	}

	accepted, _ := os.ReadFile(out("accepted.txt"))
	ids := strings.Fields(string(accepted))
	slices.SortFunc(ids, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
	if !slices.Equal(ids, []string{"0", "1", "2", "3", "6", "7"}) {
		t.Fatalf("--accepted-out: %q", accepted)
	}

	timeline, _ := os.ReadFile(out("timeline.csv"))
	lines := strings.Split(strings.TrimSuffix(string(timeline), "\n"), "\n")
	if lines[0] != "second,accepted,non_2xx,timeouts,errors" {
		t.Fatalf("timeline header %q", lines[0])
	}
	row := regexp.MustCompile(`^(\d+),(\d+),(\d+),(\d+),(\d+)$`)
	var totals [4]int
	for i, l := range lines[1:] {
		m := row.FindStringSubmatch(l)
		if m == nil || m[1] != strconv.Itoa(i) {
			t.Fatalf("timeline line %d: %q", i+1, l)
		}
		for j := range totals {
			n, _ := strconv.Atoi(m[j+2])
			totals[j] += n
		}
	}
	if totals != [4]int{3, 4, 2, 0} {
		t.Fatalf("timeline totals (accepted, non_2xx, timeouts, errors) %v, want [3 4 2 0]:\n%s", totals, timeline)
	}
}

func TestLoadgenPrintsASummaryAndFailsOnLostEvents(t *testing.T) {
	srv := loadgenTestServer(t)
	args := []string{"--url", srv.URL, "--key", "test-key", "--events", "10", "--batch", "2", "--duplicates", "0",
		"--retries", "2", "--source", "loadgen/test", "--quiet"}
	var stdout, stderr bytes.Buffer
	err := runLoadgen(context.Background(), args, &stdout, &stderr)
	if err == nil || err.Error() != "2 events failed and 2 were rejected" {
		t.Fatalf("err = %v", err)
	}
	timing := regexp.MustCompile(`\d[\d.]*( events/s|ms|s)`)
	got := timing.ReplaceAllString(stdout.String(), "N$1")
	want := `loadgen summary (source loadgen/test)
  sent             10 events (0 deliberate duplicates) in 5 requests
  accepted (202)   6 events, 6 unique
  rejected (4xx)   2 events
  failed           2 events (no 202 after 2 attempts)
  retried          2 requests, 4 non-2xx answers, 0 timeouts
  throughput       N events/s over Ns
  request latency  p50 Nms  p95 Nms  p99 Nms  max Nms
`
	if got != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", got, want)
	}
}

// Retries are the client's, and every answer they got still counts: a 429
// waited out is a non-2xx answer, and a retry, in the summary and the
// timeline.
func TestLoadgenCountsRetriedAnswers(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("X-Request-Id")]++
		first := seen[r.Header.Get("X-Request-Id")] == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		var events []json.RawMessage
		_ = json.NewDecoder(r.Body).Decode(&events)
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"accepted":%d}`, len(events))
	}))
	defer srv.Close()
	timelinePath := filepath.Join(t.TempDir(), "timeline.csv")
	args := []string{"--url", srv.URL, "--key", "test-key", "--events", "4", "--batch", "2", "--duplicates", "0",
		"--concurrency", "2", "--json", "--quiet", "--timeline-out", timelinePath}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	if err := runLoadgen(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("%v (stderr %s)", err, stderr.String())
	}
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Fatalf("done in %v: the Retry-After of 1s was not waited out", elapsed)
	}
	var sum loadgenSummary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Accepted != 4 || sum.UniqueAccepted != 4 || sum.Non2xx != 2 || sum.Retries != 2 || sum.Failed != 0 || sum.Rejected != 0 {
		t.Fatalf("summary %+v", sum)
	}
	raw, _ := os.ReadFile(timelinePath)
	var accepted, non2xx int
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n")[1:] {
		var sec, a, n, to, e int
		fmt.Sscanf(line, "%d,%d,%d,%d,%d", &sec, &a, &n, &to, &e)
		accepted, non2xx = accepted+a, non2xx+n
	}
	if accepted != 2 || non2xx != 2 {
		t.Fatalf("timeline:\n%s", raw)
	}
}
