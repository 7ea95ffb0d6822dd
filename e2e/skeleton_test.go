package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBothTargetsHoldExactlyTheUniqueEvents publishes 20,000 events of which
// 10 % repeat an earlier event, then resends a part of them in later
// requests: each target must hold every unique event once and nothing else.
func TestBothTargetsHoldExactlyTheUniqueEvents(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{})
	p.startIngest()
	a := p.startApply("a")
	b := p.startApply("b")

	first := p.loadgen("--events", "20000", "--duplicates", "0.1", "--batch", "100", "--concurrency", "4")
	if first.Accepted != 20000 || first.UniqueAccepted != 18000 {
		t.Fatalf("loadgen: %+v", first)
	}
	// The same source again: ids 0…1999 once more, each already applied.
	resent := p.loadgen("--source", first.Source, "--events", "2000", "--duplicates", "0", "--batch", "250")
	if resent.Accepted != 2000 {
		t.Fatalf("resend: %+v", resent)
	}
	for id := range resent.ids {
		if !first.ids[id] {
			t.Fatalf("resent id %s was not in the first run", id)
		}
	}

	for _, target := range []string{"a", "b"} {
		p.waitCount(target, first.Source, 18000, 2*time.Minute)
		// Give a straggling duplicate the chance to show up if it were going to.
		time.Sleep(time.Second)
		got, rows := p.ids(target, first.Source)
		if rows != 18000 {
			t.Errorf("target %s holds %d rows, want 18000", target, rows)
		}
		if err := sameSet(first.ids, got); err != nil {
			t.Errorf("target %s: %v", target, err)
		}
	}
	for short, ap := range map[string]*applier{"a": a, "b": b} {
		label := fmt.Sprintf(`{result=%q,target=%q}`, "applied", p.targets[short])
		if got := metric(t, ap.addr, "sluice_apply_events_total"+label); got != 18000 {
			t.Errorf("target %s: sluice_apply_events_total%s = %v, want 18000", short, label, got)
		}
		dup := fmt.Sprintf(`{result=%q,target=%q}`, "duplicate", p.targets[short])
		if got := metric(t, ap.addr, "sluice_apply_events_total"+dup); got != 4000 {
			t.Errorf("target %s: duplicates counted %v, want 4000 (2,000 in the run, 2,000 resent)", short, got)
		}
	}
}

// TestAKilledApplierResumesWithoutGapsOrDuplicates kills the applier of B
// with SIGKILL mid-stream and restarts it: B must end with exactly the unique
// set, resuming from the offsets it committed with its rows.
func TestAKilledApplierResumesWithoutGapsOrDuplicates(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{})
	p.startIngest()
	p.startApply("a")
	b := p.startApply("b")

	done := make(chan loadgenResult, 1)
	source := "kill9/" + p.id
	go func() {
		done <- p.loadgen("--source", source, "--events", "20000", "--duplicates", "0.1", "--rate", "2500", "--concurrency", "4")
	}()
	p.waitCount("b", source, 3000, time.Minute)
	b.kill()
	killedAt := p.count("b", source)
	t.Logf("killed B's applier at %d rows", killedAt)
	time.Sleep(time.Second)
	p.startApply("b")

	res := <-done
	if res.Failed != 0 || res.Rejected != 0 {
		t.Fatalf("loadgen: %+v", res)
	}
	for _, target := range []string{"a", "b"} {
		p.waitCount(target, source, res.UniqueAccepted, 2*time.Minute)
		time.Sleep(time.Second)
		got, rows := p.ids(target, source)
		if rows != res.UniqueAccepted {
			t.Errorf("target %s holds %d rows, want %d", target, rows, res.UniqueAccepted)
		}
		if err := sameSet(res.ids, got); err != nil {
			t.Errorf("target %s: %v", target, err)
		}
	}
	// No gaps: B's offsets row for every partition is at the log end.
	conn := p.db("b")
	var applied int64
	if err := conn.QueryRow(context.Background(), `SELECT coalesce(sum(next_offset), 0) FROM sluice_offsets WHERE topic = $1`, p.topic).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if end := p.topicEnd(); applied != end {
		t.Errorf("B's offsets sum to %d, the topic ends at %d", applied, end)
	}
}

// TestSIGTERMStopsTheApplierCleanly stops an applier under load with
// SIGTERM: it must exit 0 promptly, and a new applier must complete the set.
func TestSIGTERMStopsTheApplierCleanly(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{})
	p.startIngest()
	a := p.startApply("a")
	source := "sigterm/" + p.id
	done := make(chan loadgenResult, 1)
	go func() {
		done <- p.loadgen("--source", source, "--events", "10000", "--duplicates", "0", "--rate", "2500")
	}()
	p.waitCount("a", source, 2000, time.Minute)
	began := time.Now()
	if err := a.stop(30 * time.Second); err != nil {
		t.Fatalf("applier did not exit cleanly on SIGTERM: %v", err)
	}
	t.Logf("applier stopped %v after SIGTERM", time.Since(began).Round(time.Millisecond))
	p.startApply("a")
	res := <-done
	p.waitCount("a", source, res.UniqueAccepted, 2*time.Minute)
	time.Sleep(time.Second)
	got, rows := p.ids("a", source)
	if rows != res.UniqueAccepted {
		t.Errorf("A holds %d rows, want %d", rows, res.UniqueAccepted)
	}
	if err := sameSet(res.ids, got); err != nil {
		t.Error(err)
	}
}

// TestBrokerRestartLosesNoAcceptedEvent restarts the Kafka broker while
// loadgen publishes: every event that got 202 must reach both targets.
func TestBrokerRestartLosesNoAcceptedEvent(t *testing.T) {
	p := newPipeline(t, pipelineOptions{})
	p.startIngest()
	p.startApply("a")
	p.startApply("b")
	source := "restart/" + p.id
	done := make(chan loadgenResult, 1)
	go func() {
		done <- p.loadgen("--source", source, "--events", "24000", "--duplicates", "0", "--rate", "2000",
			"--concurrency", "4", "--retries", "40")
	}()
	p.waitCount("a", source, 3000, time.Minute)
	out, err := runStack(p.svc.stack, "restart-kafka")
	if err != nil {
		t.Fatalf("restart-kafka: %v\n%s", err, out)
	}
	t.Logf("broker restarted")
	res := <-done
	t.Logf("loadgen: accepted %d, failed %d, non-2xx answers %d", res.Accepted, res.Failed, res.Non2xx)
	if res.UniqueAccepted == 0 {
		t.Fatal("nothing accepted")
	}
	for _, target := range []string{"a", "b"} {
		p.waitCount(target, source, res.UniqueAccepted, 3*time.Minute)
		got, _ := p.ids(target, source)
		for id := range res.ids {
			if !got[id] {
				t.Fatalf("target %s lacks event %s, which was answered 202", target, id)
			}
		}
	}
}

// TestAKilledIngestLosesNoAcceptedEvent kills ingest with SIGKILL under
// load (no drain: requests are cut off mid-flight) and starts it again two
// seconds later. A request cut off got no answer, so its publisher retries
// it; every event answered 202 must reach both targets, once.
func TestAKilledIngestLosesNoAcceptedEvent(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{})
	ingest := p.startIngest()
	p.startApply("a")
	p.startApply("b")
	source := "ingest-killed/" + p.id
	done := make(chan loadgenResult, 1)
	go func() {
		done <- p.loadgen("--source", source, "--events", "15000", "--duplicates", "0.05", "--rate", "1000",
			"--batch", "20", "--concurrency", "8", "--retries", "40")
	}()
	p.waitCount("a", source, 3000, time.Minute)
	ingest.kill()
	time.Sleep(2 * time.Second)
	p.restartIngest()
	res := <-done
	t.Logf("loadgen: %d accepted (%d unique), %d retries, %d non-2xx answers, %d failed",
		res.Accepted, res.UniqueAccepted, res.Retries, res.Non2xx, res.Failed)
	if res.Retries == 0 {
		t.Error("no request was retried across a killed ingest: was it killed under load?")
	}
	if res.Failed != 0 || res.Rejected != 0 {
		t.Errorf("%d events failed and %d were rejected, though ingest came back", res.Failed, res.Rejected)
	}
	for _, target := range []string{"a", "b"} {
		p.waitCount(target, source, res.UniqueAccepted, 2*time.Minute)
		got, rows := p.ids(target, source)
		if err := sameSet(res.ids, got); err != nil || rows != res.UniqueAccepted {
			t.Errorf("target %s holds %d rows (%v); want the %d accepted events once each", target, rows, err, res.UniqueAccepted)
		}
	}
}

// TestBadInputIsRefusedAndAppendsNothing sends every kind of bad request to
// a real ingest and checks both the answer and that the topic stays empty.
func TestBadInputIsRefusedAndAppendsNothing(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{})
	p.startIngest()
	url := "http://" + p.ingestAt + "/v1/events"
	good := `{"specversion":"1.0","id":"1","source":"bad-input","type":"t"}`
	huge := `{"specversion":"1.0","id":"2","source":"bad-input","type":"t","data":"` + strings.Repeat("x", 1<<20+1) + `"}`
	cases := []struct {
		name, contentType, auth, body string
		want                          int
	}{
		{"malformed JSON", "application/json", "Bearer " + p.key, `{"specversion":"1.0",`, 400},
		{"a missing id", "application/json", "Bearer " + p.key, `{"specversion":"1.0","source":"s","type":"t"}`, 400},
		{"a wrong specversion", "application/json", "Bearer " + p.key, `{"specversion":"2.0","id":"1","source":"s","type":"t"}`, 400},
		{"one bad event in a batch", "application/cloudevents-batch+json", "Bearer " + p.key, `[` + good + `,{"id":"x"}]`, 400},
		{"an oversized body", "application/json", "Bearer " + p.key, huge, 413},
		{"a missing key", "application/json", "", good, 401},
		{"a wrong key", "application/json", "Bearer not-the-key-0123456789", good, 401},
		{"a wrong media type", "text/plain", "Bearer " + p.key, good, 415},
		{"an id of invalid UTF-8", "application/cloudevents+json", "Bearer " + p.key, "{\"specversion\":\"1.0\",\"id\":\"\xff\",\"source\":\"s\",\"type\":\"t\"}", 400},
		{"an id that is a lone surrogate", "application/cloudevents+json", "Bearer " + p.key, `{"specversion":"1.0","id":"\ud800","source":"s","type":"t"}`, 400},
		{"a NUL in data", "application/cloudevents+json", "Bearer " + p.key, `{"specversion":"1.0","id":"n","source":"s","type":"t","data":"\u0000"}`, 400},
		{"a hostile batch of empty objects", "application/cloudevents-batch+json", "Bearer " + p.key, "[" + strings.Repeat("{},", 340_000) + "{}]", 413},
		{"an empty batch (accepted, nothing to append)", "application/cloudevents-batch+json", "Bearer " + p.key, `[]`, 202},
		{"a plain body labelled gzip", "application/cloudevents+json;Content-Encoding=gzip", "Bearer " + p.key, good, 400},
		{"a coding ingest does not speak", "application/cloudevents+json;Content-Encoding=br", "Bearer " + p.key, good, 415},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(c.body))
		contentType, coding, _ := strings.Cut(c.contentType, ";Content-Encoding=")
		req.Header.Set("Content-Type", contentType)
		if coding != "" {
			req.Header.Set("Content-Encoding", coding)
		}
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.want)
		}
	}
	if n := p.topicEnd(); n != 0 {
		t.Fatalf("bad requests appended %d records", n)
	}
	// The same check passes a good request through, so it can fail.
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(good))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("Authorization", "Bearer "+p.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("good request: %d", resp.StatusCode)
	}
	if n := p.topicEnd(); n != 1 {
		t.Fatalf("a good request appended %d records, want 1", n)
	}
}

func runStack(stack string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := execOutput(ctx, stack, args...)
	return out, err
}

// TestRateLimitedRequestsAppendNothing limits each key to 500 events/s and
// publishes 3,000 as fast as possible: ingest must answer 429 to the excess,
// loadgen retries after Retry-After, and the topic ends with exactly the
// 3,000 events, none appended twice by a refused request.
func TestRateLimitedRequestsAppendNothing(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{extraIngest: "  rate_per_key: 500"})
	p.startIngest()
	res := p.loadgen("--events", "3000", "--duplicates", "0", "--batch", "100", "--concurrency", "4")
	if res.Accepted != 3000 || res.Failed != 0 {
		t.Fatalf("loadgen: %+v", res)
	}
	if res.Non2xx == 0 {
		t.Fatal("no request was refused: the limit is not enforced")
	}
	if n := p.topicEnd(); n != 3000 {
		t.Fatalf("the topic holds %d records, want exactly 3000", n)
	}
	t.Logf("%d requests were answered 429 and retried", res.Non2xx)
}
