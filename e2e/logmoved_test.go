package e2e

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestARecreatedEventsTopicStopsTargetsLoudly replays an operator's mistake:
// the events topic is deleted and created again while ingest and both
// appliers run. Ingest must not answer 202 for events it cannot append; the
// targets, whose positions now lie beyond the new log's end, must apply
// nothing of it (applying from their old positions would silently skip the
// new log's first events), say so in ctl status, and resume from where an
// operator's rewind puts them.
func TestARecreatedEventsTopicStopsTargetsLoudly(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{partitions: 2})
	p.startIngest()
	p.startApply("a")
	p.startApply("b")
	before := p.loadgen("--source", "before/"+p.id, "--events", "2000", "--duplicates", "0")
	for _, target := range []string{"a", "b"} {
		p.waitCount(target, "before/"+p.id, before.UniqueAccepted, time.Minute)
	}

	ctx := context.Background()
	if _, err := p.kafka().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{p.topic}}); err != nil {
		t.Fatal(err)
	}
	// While the topic is missing, ingest cannot append: never a 202.
	deadline := time.Now().Add(20 * time.Second)
	var code int
	for time.Now().Before(deadline) {
		code = p.postOne(`{"specversion":"1.0","id":"while-missing","source":"missing/` + p.id + `","type":"t"}`)
		if code != http.StatusAccepted {
			break
		}
		time.Sleep(200 * time.Millisecond) // the deletion may take a moment to reach the broker's metadata
	}
	if code == http.StatusAccepted {
		t.Fatalf("ingest answered 202 for an event while its topic was deleted")
	}
	t.Logf("ingest answered %d while the topic was missing", code)

	// The operator creates the topic again; the new log is short (100
	// events), so both targets' positions lie beyond its end.
	for attempt := 0; ; attempt++ {
		resp, err := p.kafka().CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
			{Topic: p.topic, NumPartitions: 2, ReplicationFactor: 1}}})
		if err == nil && resp.Errors[p.topic] == nil {
			break
		}
		if attempt == 100 {
			t.Fatalf("create the topic again: %v %v", err, resp)
		}
		time.Sleep(200 * time.Millisecond) // still being deleted
	}
	time.Sleep(2 * time.Second)
	after := p.loadgen("--source", "after/"+p.id, "--events", "100", "--duplicates", "0", "--retries", "40")
	if after.UniqueAccepted != 100 {
		t.Fatalf("after the topic came back: %+v", after)
	}

	// Stopped loudly: nothing of the new log applied, ctl status says why.
	var out string
	deadline = time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		out, _ = p.ctlErr("status", p.targets["b"])
		if strings.Contains(out, "LOG MOVED") {
			break
		}
		time.Sleep(time.Second)
	}
	if !strings.Contains(out, "LOG MOVED") {
		t.Fatalf("ctl status does not say the log moved under B:\n%s", out)
	}
	for _, target := range []string{"a", "b"} {
		if n := p.count(target, "after/"+p.id); n != 0 {
			t.Fatalf("target %s applied %d events of the new log from its old position", target, n)
		}
	}
	// Its lag is unknown, never 0 (which reads as caught up), and a
	// cutover to it is NO-GO although both targets look equal.
	view := p.statusOf(t, "b")
	if lag, _ := view["lag_messages"].(float64); lag != -1 || view["lag_unknown"] == nil {
		t.Errorf("ctl status --json says B lags %v records (lag_unknown %v); want -1 and the partitions named", view["lag_messages"], view["lag_unknown"])
	}
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(p.targets["b"]) + `\s+\S+\s+\S+\s+\S+\s+unknown\s`).MatchString(out) {
		t.Errorf("ctl status's summary row does not say B's lag is unknown:\n%s", out)
	}
	check, err := p.ctlErr("cutover-check", p.targets["a"], p.targets["b"])
	if err == nil || !strings.Contains(check, "log positions known") || regexp.MustCompile(`(?m)^GO:`).MatchString(check) {
		t.Errorf("cutover-check with B's log moved: %v\n%s\nwant NO-GO naming the unknown positions", err, check)
	}

	// The operator decides: B replays the new log from its start.
	p.ctl("rewind", p.targets["b"], "--to-offset", "earliest")
	p.waitCount("b", "after/"+p.id, 100, time.Minute)
	if n := p.count("b", "after/"+p.id); n != 100 {
		t.Fatalf("B holds %d events of the new log after the rewind, want 100", n)
	}
	if n := p.count("a", "after/"+p.id); n != 0 {
		t.Fatalf("A, not rewound, applied %d events of the new log", n)
	}
}

// postOne publishes one structured event and returns the status code (0 when
// ingest does not answer).
func (p *pipeline) postOne(body string) int {
	req, err := http.NewRequest(http.MethodPost, "http://"+p.ingestAt+"/v1/events", strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("Authorization", "Bearer "+p.key)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
