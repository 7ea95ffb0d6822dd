package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testenv"
)

// stallWatch samples a target's row count for a source and keeps the
// longest time it went without growing while rows were still due.
type stallWatch struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	longest time.Duration
}

func (p *pipeline) watchStalls(short, source string, due func() int) *stallWatch {
	w := &stallWatch{stop: make(chan struct{}), done: make(chan struct{})}
	// A session of its own: the pipeline's is the test goroutine's, and a
	// pgx connection serves one query at a time.
	conn := connect(p.t, p.dsns[short])
	go func() {
		defer close(w.done)
		last, since := -1, time.Now()
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			var n int
			if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM sluice_events WHERE source = $1`, source).Scan(&n); err != nil {
				continue // the database is not what this test breaks; the next sample will do
			}
			if n != last || n >= due() {
				last, since = n, time.Now()
				continue
			}
			w.mu.Lock()
			w.longest = max(w.longest, time.Since(since))
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *stallWatch) result() time.Duration {
	close(w.stop)
	<-w.done
	return w.longest
}

// TestBrokerFailuresOnAThreeBrokerCluster runs the pipeline on three
// brokers (replication 3, min.insync.replicas 2) and kills them under
// load. One broker down: ingest keeps accepting, nothing accepted is lost,
// the appliers move to the new leaders within a bounded stall. Two down: a
// write cannot reach two replicas, so ingest answers 503 — fast once the
// dead brokers are fenced — and never 202. Both back: everything converges.
func TestBrokerFailuresOnAThreeBrokerCluster(t *testing.T) {
	stack := testenv.Require(t, "SLUICE_STACK")
	brokers := testenv.Require(t, "SLUICE_TEST_KAFKA_CLUSTER")
	if out, err := runStack(stack, "cluster-up"); err != nil {
		t.Fatalf("cluster-up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := runStack(stack, "cluster-down"); err != nil {
			t.Logf("cluster-down: %v\n%s", err, out)
		}
	})
	p := newPipeline(t, pipelineOptions{partitions: 6, brokers: brokers, testBrokers: brokers,
		extraKafka: "  replication_factor: 3"})
	p.startIngest()
	p.startApply("a")
	p.startApply("b")
	figures := map[string]any{}
	accepted := map[string]bool{}
	add := func(r loadgenResult) {
		for id := range r.ids {
			accepted[r.Source+"/"+id] = true
		}
	}

	// One broker down, under load.
	source1 := "brokers-one/" + p.id
	load := make(chan loadgenResult, 1)
	go func() {
		load <- p.loadgen("--source", source1, "--events", "15000", "--rate", "1000", "--duplicates", "0", "--batch", "50", "--concurrency", "4")
	}()
	stallA := p.watchStalls("a", source1, func() int { return 15000 })
	time.Sleep(5 * time.Second)
	killed := time.Now()
	if out, err := runStack(stack, "cluster-kill", "1"); err != nil {
		t.Fatalf("kill broker 1: %v\n%s", err, out)
	}
	one := <-load
	add(one)
	for _, short := range []string{"a", "b"} {
		p.waitCount(short, source1, one.UniqueAccepted, 2*time.Minute)
	}
	figures["one_down_accepted"] = one.Accepted
	figures["one_down_non_2xx"] = one.Non2xx
	figures["one_down_failed"] = one.Failed
	figures["one_down_longest_apply_stall_s"] = stallA.result().Seconds()
	figures["one_down_converged_after_kill_s"] = time.Since(killed).Seconds()
	if one.Accepted != 15000 || one.Failed != 0 {
		t.Fatalf("with one broker down: %+v", one)
	}
	if stall := figures["one_down_longest_apply_stall_s"].(float64); stall > 30 {
		t.Fatalf("A's apply stalled %.1fs after a broker died, want under 30s", stall)
	}

	// Two brokers down: no write can be replicated twice.
	if out, err := runStack(stack, "cluster-kill", "2"); err != nil {
		t.Fatalf("kill broker 2: %v\n%s", err, out)
	}
	twoDown := time.Now()
	var answers []string
	var slowestLate time.Duration
	for i := 0; time.Since(twoDown) < 20*time.Second; i++ {
		began := time.Now()
		code := postOne(t, p, fmt.Sprintf("two-down-%d", i))
		took := time.Since(began)
		answers = append(answers, fmt.Sprint(code))
		if code == http.StatusAccepted {
			t.Fatalf("ingest answered 202 with two of three brokers down (request %d, %v after the kill)", i, began.Sub(twoDown))
		}
		if code != http.StatusServiceUnavailable {
			t.Fatalf("with two brokers down: %d, want 503", code)
		}
		if began.Sub(twoDown) > 10*time.Second {
			slowestLate = max(slowestLate, took)
		}
		time.Sleep(300 * time.Millisecond)
	}
	figures["two_down_answers"] = len(answers)
	figures["two_down_slowest_503_after_10s_s"] = slowestLate.Seconds()
	if slowestLate > 3*time.Second {
		t.Fatalf("10s after the second broker died, a 503 still took %v; want it fast", slowestLate)
	}

	// Both back: everything converges, and publishing works again.
	back := time.Now()
	for _, n := range []string{"1", "2"} {
		if out, err := runStack(stack, "cluster-start", n); err != nil {
			t.Fatalf("start broker %s: %v\n%s", n, err, out)
		}
	}
	source3 := "brokers-back/" + p.id
	after := p.loadgen("--source", source3, "--events", "3000", "--duplicates", "0", "--batch", "50")
	add(after)
	if after.Accepted != 3000 || after.Failed != 0 {
		t.Fatalf("after the brokers came back: %+v", after)
	}
	for _, short := range []string{"a", "b"} {
		p.waitCount(short, source3, after.UniqueAccepted, 2*time.Minute)
		p.waitCount(short, source1, one.UniqueAccepted, time.Minute)
		for _, src := range []string{source1, source3} {
			ids, _ := p.ids(short, src)
			for id := range ids {
				delete(accepted, src+"/"+id)
			}
		}
	}
	figures["back_converged_s"] = time.Since(back).Seconds()
	if len(accepted) != 0 {
		t.Fatalf("%d accepted events are missing from a target", len(accepted))
	}
	record(t, "broker_failures", figures)
	t.Logf("figures: %v", figures)
}

// postOne publishes one event and returns the answer's status.
func postOne(t *testing.T, p *pipeline, id string) int {
	t.Helper()
	body := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"brokers-two/%s","type":"t"}`, id, p.id)
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+p.ingestAt+"/v1/events", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("Authorization", "Bearer "+p.key)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("publish with two brokers down: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
