package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/producer/client"
)

// These tests publish to a real `sluice ingest`, built from this tree, on
// the Kafka broker of the local stack: the answers, limits and Retry-After
// the client copes with are the server's own, not a test double's.

var (
	buildOnce sync.Once
	binDir    string
	sluiceBin string
	buildErr  error
	// adminFlag says whether ingest serves its admin API on an address of
	// its own, which each test's ingest must then be given.
	adminFlag bool
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// sluice returns the binary, built once, on first use: -short runs never
// build it.
func sluice(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "sluice-client-test"); buildErr != nil {
			return
		}
		sluiceBin = filepath.Join(binDir, "sluice")
		out, err := exec.Command("go", "build", "-o", sluiceBin, "../../cmd/sluice").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		help, _ := exec.Command(sluiceBin, "ingest", "--help").CombinedOutput()
		adminFlag = bytes.Contains(help, []byte("-admin-listen"))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return sluiceBin
}

// realIngest is one test's ingest process.
type realIngest struct {
	url, key string
	topic    string
}

// startIngest runs ingest with the given brokers and topic and extra YAML
// lines under ingest:, and waits until it serves (and, when wantReady, until
// its broker answers too).
func startIngest(t *testing.T, brokers, topic, extraIngest string, wantReady bool) realIngest {
	t.Helper()
	bin := sluice(t)
	id := testenv.ID()
	dir := t.TempDir()
	key := "client-test-" + id + "-0123456789"
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  topic: %s
  partitions: 3
  retention: 1h
ingest:
  keys: [%q]
  admin_token: "client-test-admin-%s-0123456789"
%s
log: {level: warn}
`, brokers, topic, key, id, extraIngest)
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := testenv.FreeAddr(t)
	args := []string{"ingest", "--config", path, "--listen", listen}
	if adminFlag {
		args = append(args, "--admin-listen", testenv.FreeAddr(t))
	}
	logPath := filepath.Join(dir, "ingest.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The file alone configures it: variables of the caller's shell would
	// override its keys and brokers.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("ingest's log:\n%s", out)
		}
	})
	probe := "/healthz"
	if wantReady {
		probe = "/readyz"
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + listen + probe)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingest did not answer %s 200 within 20s (last: %v)", probe, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return realIngest{url: "http://" + listen + "/v1/events", key: key, topic: topic}
}

// startStackIngest runs ingest on the local stack's broker, publishing to a
// fresh topic.
func startStackIngest(t *testing.T, extraIngest string) (realIngest, func() int64) {
	t.Helper()
	cluster := testenv.Kafka(t)
	topic := testenv.Topic(t, cluster, 3)
	in := startIngest(t, cluster.Brokers()[0], topic, extraIngest, true)
	records := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		starts, ends, err := cluster.LogBounds(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for p, end := range ends {
			n += end - starts[p]
		}
		return n
	}
	return in, records
}

// attempts counts the attempts a client made, by status.
type attempts struct {
	mu     sync.Mutex
	byCode map[int]int
	bad    []string // attempts that came back before the Retry-After
}

func (a *attempts) observe(at client.Attempt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byCode == nil {
		a.byCode = map[int]int{}
	}
	a.byCode[at.StatusCode]++
	if at.Wait > 0 && at.Wait < at.RetryAfter {
		a.bad = append(a.bad, fmt.Sprintf("%+v", at))
	}
}

func (a *attempts) count(code int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.byCode[code]
}

func bulk(source string, n int) []client.Event {
	out := make([]client.Event, n)
	for i := range out {
		out[i] = client.Event{Source: source, Type: "client.test.v1", Subject: fmt.Sprintf("s-%d", i%17),
			Data: fmt.Appendf(nil, `{"i":%d}`, i)}
	}
	return out
}

func TestRealIngestAcceptsRefusesAndMapsBack(t *testing.T) {
	t.Parallel()
	in, records := startStackIngest(t, "")
	c, err := client.New(client.Config{URL: in.url, Key: in.key, Gzip: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	events := bulk("client/accepted", 2500) // three requests of at most 1000
	events[7].DataContentType, events[7].Data = "application/octet-stream", []byte{0, 0xff, 0xfe}
	if n, err := c.Publish(ctx, events); n != 2500 || err != nil {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	if got := records(); got != 2500 {
		t.Fatalf("the topic holds %d records, want 2500", got)
	}

	refused := bulk("client/refused", 1500)
	refused[1234].Type = ""
	n, err := c.Publish(ctx, refused)
	var rej *client.RejectedError
	if n != 1000 || !errors.As(err, &rej) || rej.StatusCode != http.StatusBadRequest || len(rej.Events) != 1 ||
		rej.Events[0].Index != 1234 || !strings.Contains(rej.Events[0].Reason, `"type"`) {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	if got := records(); got != 3500 {
		t.Fatalf("the topic holds %d records, want 3500: the refused request was appended", got)
	}

	tooMany, _ := client.New(client.Config{URL: in.url, Key: in.key, MaxEvents: 1001})
	if _, err := tooMany.Publish(ctx, bulk("client/413", 1001)); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("1001 events in a request: %v", err)
	}
	wrongKey, _ := client.New(client.Config{URL: in.url, Key: "not-the-key-0123456789"})
	if _, err := wrongKey.Publish(ctx, bulk("client/401", 1)); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("a wrong key: %v", err)
	}
	if got := records(); got != 3500 {
		t.Fatalf("the topic holds %d records, want 3500", got)
	}
}

func TestRealIngestRateLimitIsWaitedOut(t *testing.T) {
	t.Parallel()
	// The burst is max(max_events, rate): 300 events at once, then 300/s.
	in, records := startStackIngest(t, "  rate_per_key: 300\n  max_events: 100")
	var seen attempts
	c, err := client.New(client.Config{URL: in.url, Key: in.key, MaxEvents: 100, OnAttempt: seen.observe})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			if n, err := c.Publish(ctx, bulk(fmt.Sprintf("client/429/%d", w), 300)); n != 300 || err != nil {
				t.Errorf("publisher %d: Publish = %d, %v", w, n, err)
			}
		})
	}
	wg.Wait()
	if seen.count(http.StatusTooManyRequests) == 0 {
		t.Fatal("no request was answered 429: the test did not exercise the limit")
	}
	if len(seen.bad) > 0 {
		t.Fatalf("retries before the Retry-After: %v", seen.bad)
	}
	if got := records(); got != 900 {
		t.Fatalf("the topic holds %d records, want exactly 900", got)
	}
	t.Logf("%d answers 429, %d 202", seen.count(429), seen.count(202))
}

func TestRealIngestAtItsInFlightLimitIsRetried(t *testing.T) {
	t.Parallel()
	in, records := startStackIngest(t, "  max_in_flight: 1")
	var seen attempts
	c, err := client.New(client.Config{URL: in.url, Key: in.key, MaxEvents: 100, MaxInFlight: 8, OnAttempt: seen.observe})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var published atomic.Int64
	// Publishers that start together collide at once; a round with no
	// collision (a very quick broker) is followed by another.
	for round := 0; round < 3 && seen.count(http.StatusServiceUnavailable) == 0; round++ {
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 6 {
			wg.Go(func() {
				<-start
				n, err := c.Publish(ctx, bulk(fmt.Sprintf("client/503/%d/%d", round, w), 200))
				published.Add(int64(n))
				if err != nil {
					t.Errorf("Publish = %d, %v", n, err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	if seen.count(http.StatusServiceUnavailable) == 0 {
		t.Fatal("no request was answered 503: the test did not exercise the limit")
	}
	if len(seen.bad) > 0 {
		t.Fatalf("retries before the Retry-After: %v", seen.bad)
	}
	if got, want := records(), published.Load(); got != want {
		t.Fatalf("the topic holds %d records, want exactly %d", got, want)
	}
	t.Logf("%d answers 503, %d 202", seen.count(503), seen.count(202))
}

func TestRealIngestWithoutKafkaGivesUpWithTheAnswer(t *testing.T) {
	t.Parallel()
	testenv.Require(t, "SLUICE_TEST_KAFKA")
	// A port where nothing listens: every write fails, within write_timeout.
	in := startIngest(t, testenv.FreeAddr(t), "sluice.test."+testenv.ID(), "  write_timeout: 500ms", false)
	var seen attempts
	c, err := client.New(client.Config{URL: in.url, Key: in.key, MaxAttempts: 2, OnAttempt: seen.observe})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	n, err := c.Publish(ctx, bulk("client/nokafka", 10))
	var se *client.StatusError
	if n != 0 || !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable || se.RetryAfter < time.Second ||
		!strings.Contains(err.Error(), "2 attempts") {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	if seen.count(http.StatusServiceUnavailable) != 2 || len(seen.bad) > 0 {
		t.Fatalf("attempts %+v, early retries %v", seen.byCode, seen.bad)
	}
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Fatalf("gave up after %v: the Retry-After was not waited out", elapsed)
	}
}
