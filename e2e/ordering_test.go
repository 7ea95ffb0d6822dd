package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/producer/client"
)

// TestSubjectOrderedUpdatesSurviveAFrozenBroker: eight publishers send
// updates of their customers' emails through sluice's client, one round at
// a time, while the broker freezes for 15s. They are impatient: a round
// whose outcome is still unknown when the client gives up is left, and the
// next sent. A request answered 503 while kafka-go still holds its records
// must never land after a later update of the same customer: afterwards
// both targets' projections hold, for every customer, the last update its
// publisher got a 202 for. (kafka-go writes a partition's batches one at a
// time, so within one ingest a held batch lands before a later one of its
// partition or not at all; ingest's wait on unsettled partition keys makes
// that its own promise rather than the writer's.)
func TestSubjectOrderedUpdatesSurviveAFrozenBroker(t *testing.T) {
	p := newPipeline(t, pipelineOptions{partitions: 3, extraTarget: shopTargets(t), extraIngest: "  write_timeout: 3s"})
	p.startIngest()
	p.startApply("a")
	p.startApply("b")
	source := "ordered/" + p.id
	const publishers, customersEach = 8, 4
	// Every answer that left an outcome unknown (5xx, or none) is counted:
	// the freeze must have made some, or it proved nothing.
	var unknown, gaveUp atomic.Int64
	counting := &http.Client{Transport: countingTransport{unknown: &unknown, next: http.DefaultTransport}}
	var mu sync.Mutex
	last := map[string]string{} // customer → the email of its last update answered 202
	accepted := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for pub := range publishers {
		wg.Go(func() {
			c, err := client.New(client.Config{URL: "http://" + p.ingestAt + "/v1/events", Key: p.key, HTTPClient: counting,
				AttemptTimeout: 5 * time.Second, MaxWait: 4 * time.Second})
			if err != nil {
				t.Error(err)
				return
			}
			for round := 0; ; round++ {
				stopping := false
				select {
				case <-stop:
					stopping = true
				default:
				}
				events := make([]client.Event, customersEach)
				emails := make([]string, customersEach)
				for i := range events {
					emails[i] = fmt.Sprintf("p%d-c%d-v%d@example.com", pub, i, round)
					data, _ := json.Marshal(map[string]string{"email": emails[i]})
					events[i] = client.Event{ID: fmt.Sprintf("p%d-c%d-v%d", pub, i, round), Source: source,
						Type: "customer.email_changed", Subject: fmt.Sprintf("p%d-c%d", pub, i), Data: data}
				}
				// An impatient publisher: an update whose outcome stayed
				// unknown past the client's MaxWait is given up, and the next
				// one sent — the case where an old write could land after a
				// newer one. The last round is sent until it is a 202, so
				// that every customer's last update is a known one.
				for attempt := 0; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					_, err := c.Publish(ctx, events)
					cancel()
					if err == nil {
						break
					}
					if !stopping {
						gaveUp.Add(1)
						events = nil
						break
					}
					if attempt == 20 {
						t.Errorf("publisher %d never got its last round accepted: %v", pub, err)
						return
					}
				}
				if events != nil {
					mu.Lock()
					for i := range events {
						last[events[i].Subject] = emails[i]
					}
					accepted += len(events)
					mu.Unlock()
				}
				if stopping {
					return
				}
			}
		})
	}
	time.Sleep(4 * time.Second)
	freeze(t, p.svc.stack, "kafka")
	time.Sleep(15 * time.Second)
	thaw(t, p.svc.stack, "kafka")
	time.Sleep(6 * time.Second)
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d updates accepted for %d customers; %d answers left an outcome unknown, %d rounds given up",
		accepted, len(last), unknown.Load(), gaveUp.Load())
	if unknown.Load() == 0 {
		t.Fatal("no answer left an outcome unknown while the broker was frozen: was it frozen?")
	}
	for _, short := range []string{"a", "b"} {
		p.waitCount(short, source, accepted, 3*time.Minute) // at least: given-up rounds may be stored too
		if lag := p.waitLagZero(short, time.Minute); lag != 0 {
			t.Fatalf("target %s still lags %d messages", short, lag)
		}
	}
	query := map[string]string{
		"a": `SELECT id, coalesce(email, '') FROM customers`,
		"b": `SELECT c.client_id, coalesce(e.email, '') FROM clients c LEFT JOIN client_emails e USING (client_id)`,
	}
	for short, sql := range query {
		rows, err := p.db(short).Query(context.Background(), sql)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for rows.Next() {
			var id, email string
			if err := rows.Scan(&id, &email); err != nil {
				t.Fatal(err)
			}
			got[id] = email
		}
		rows.Close()
		wrong := 0
		for customer, want := range last {
			if got[customer] != want {
				wrong++
				if wrong <= 5 {
					t.Errorf("target %s: customer %s has %q; the last update its publisher got a 202 for is %q", short, customer, got[customer], want)
				}
			}
		}
		if wrong > 0 {
			t.Errorf("target %s: %d of %d customers hold an update older than their last accepted one", short, wrong, len(last))
		}
	}
}

// countingTransport counts the attempts whose outcome is unknown.
type countingTransport struct {
	unknown *atomic.Int64
	next    http.RoundTripper
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err != nil || resp.StatusCode >= 500 {
		c.unknown.Add(1)
	}
	return resp, err
}
