package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestSIGHUPReloadsKeysWithoutDroppingRequests: under load, ingest takes a
// new set of keys on SIGHUP — a scoped partner key given only as its digest,
// the publisher's key renamed — refuses nothing of the key it kept, names
// the key on every record, and keeps its keys when the new file is broken.
func TestSIGHUPReloadsKeysWithoutDroppingRequests(t *testing.T) {
	p := newPipeline(t, pipelineOptions{})
	ingest := p.startIngest()
	partnerKey := "partner-key-" + p.id + "-0123456789"
	digest := sha256.Sum256([]byte(partnerKey))
	original, err := os.ReadFile(p.config)
	if err != nil {
		t.Fatal(err)
	}
	oldKeys := fmt.Sprintf("keys: [%q]", p.key)
	if !strings.Contains(string(original), oldKeys) {
		t.Fatalf("the pipeline's configuration has no %s line", oldKeys)
	}
	reloads := func() float64 { return metric(t, p.adminAt, `sluice_ingest_key_reloads_total{result="ok"}`) }
	hangup := func() {
		if err := ingest.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	post := func(key, source, typ string) int {
		body := fmt.Sprintf(`{"specversion":"1.0","id":"%s","source":%q,"type":%q}`, randomID(), source, typ)
		req, _ := http.NewRequest(http.MethodPost, "http://"+p.ingestAt+"/v1/events", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/cloudevents+json")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(partnerKey, "//partner/eu", "com.partner.order"); code != 401 {
		t.Fatalf("the partner key before it is configured: %d, want 401", code)
	}

	load := make(chan loadgenResult, 1)
	go func() {
		load <- p.loadgen("--events", "20000", "--batch", "50", "--concurrency", "4", "--rate", "4000", "--duplicates", "0")
	}()
	time.Sleep(time.Second)
	newKeys := fmt.Sprintf(`keys:
    - {name: publisher, key: %q}
    - name: partner
      sha256: %s
      sources: ["//partner/"]
      types: ["com.partner.*"]`, p.key, hex.EncodeToString(digest[:]))
	writeFile(t, p.config, strings.Replace(string(original), oldKeys, newKeys, 1))
	for i := range 5 { // signals in a burst, while requests are in flight
		hangup()
		if i == 0 {
			waitFor(t, 10*time.Second, "the first reload", func() bool { return reloads() >= 1 })
		}
	}
	if code := post(partnerKey, "//partner/eu", "com.partner.order"); code != 202 {
		t.Fatalf("the partner key after the reload: %d, want 202", code)
	}
	if code := post(partnerKey, "//shop/eu", "com.partner.order"); code != 403 {
		t.Fatalf("the partner key out of its sources: %d, want 403", code)
	}
	if code := post(partnerKey, "//partner/eu", "com.shop.order"); code != 403 {
		t.Fatalf("the partner key out of its types: %d, want 403", code)
	}

	// A broken file changes nothing, and says so.
	okBefore := reloads()
	writeFile(t, p.config, strings.Replace(string(original), oldKeys, "keys: [{name: partner, sha256: nothex}]", 1))
	hangup()
	waitFor(t, 10*time.Second, "the failed reload to be counted", func() bool {
		return metric(t, p.adminAt, `sluice_ingest_key_reloads_total{result="error"}`) == 1
	})
	if reloads() != okBefore {
		t.Fatal("a broken file was counted as a reload")
	}
	if code := post(partnerKey, "//partner/eu", "com.partner.order"); code != 202 {
		t.Fatalf("the partner key after a failed reload: %d, want 202 (the previous keys stay)", code)
	}

	res := <-load
	if res.Accepted != 20000 || res.Non2xx != 0 || res.Failed != 0 || res.Timeouts != 0 {
		t.Fatalf("the publisher's requests through the reloads: %+v, want all 20000 accepted at the first try", res)
	}
	if got := metric(t, p.adminAt, `sluice_ingest_events_total{key="partner"}`); got != 2 {
		t.Fatalf(`sluice_ingest_events_total{key="partner"} = %v, want 2`, got)
	}

	// Every record names its key: the publisher's by its name before or
	// after the reload, the partner's as "partner".
	byKey := map[string]int{}
	for _, m := range p.records() {
		name := ""
		for _, h := range m.Headers {
			if h.Key == "sluice-key" {
				name = string(h.Value)
			}
		}
		byKey[name]++
	}
	unnamed := "key-" + hex.EncodeToString(func() []byte { d := sha256.Sum256([]byte(p.key)); return d[:4] }())
	if byKey["partner"] != 2 || byKey[unnamed]+byKey["publisher"] != 20000 || byKey[""] != 0 || byKey["publisher"] == 0 {
		t.Fatalf("records by sluice-key header: %v (want partner 2, %s + publisher 20000, none without)", byKey, unnamed)
	}
	t.Logf("records by key: %v", byKey)
}

// records reads every record of the pipeline's topic, partition by
// partition, up to the end each had when it was asked.
func (p *pipeline) records() []kafka.Message {
	p.t.Helper()
	var out []kafka.Message
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for part := range p.partitions {
		conn, err := kafka.DialLeader(ctx, "tcp", p.brokers[0], p.topic, part)
		if err != nil {
			p.t.Fatal(err)
		}
		end, err := conn.ReadLastOffset()
		for next := int64(0); err == nil && next < end; {
			if _, err = conn.Seek(next, kafka.SeekAbsolute); err != nil {
				break
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			batch := conn.ReadBatch(1, 16<<20)
			for {
				m, rerr := batch.ReadMessage()
				if rerr != nil {
					break
				}
				out = append(out, m)
				next = m.Offset + 1
			}
			err = batch.Close()
		}
		conn.Close()
		if err != nil {
			p.t.Fatalf("read partition %d: %v", part, err)
		}
	}
	return out
}
