package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkIngestHostileLoad measures ingest (built without the race
// detector) under what a hostile or broken publisher sends:
//   - 64 requests at once, each a 1 MiB body of the worst shape found (one
//     event of ~50,000 extension members): ingest's peak RSS;
//   - 64 uploads by one key that never finish their body, while another key
//     publishes 1,000 events/s for 10s: that key's answers that were not 2xx.
func BenchmarkIngestHostileLoad(b *testing.B) {
	p := newPipeline(b, pipelineOptions{binary: benchBinary(b), prepare: dieWithTest})
	slowKey := "e2e-slow-" + p.id + "-0123456789"
	cfg, err := os.ReadFile(p.config)
	if err != nil {
		b.Fatal(err)
	}
	one := fmt.Sprintf("keys: [%q]", p.key)
	if !bytes.Contains(cfg, []byte(one)) {
		b.Fatal("the pipeline's configuration does not list its key as expected")
	}
	cfg = bytes.Replace(cfg, []byte(one), []byte(fmt.Sprintf("keys: [%q, %q]", p.key, slowKey)), 1)
	if err := os.WriteFile(p.config, cfg, 0o600); err != nil {
		b.Fatal(err)
	}
	ingest := p.startIngest()
	url := "http://" + p.ingestAt + "/v1/events"
	post := func(c *http.Client, key string, body []byte) int {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/cloudevents+json")
		resp, err := c.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	b.Run("worst-shape 1MiB bodies c=64", func(b *testing.B) {
		var ev strings.Builder
		ev.WriteString(`{"specversion":"1.0","id":"w","source":"hostile","type":"t"`)
		for i := 0; ev.Len() < 1<<20-32; i++ {
			fmt.Fprintf(&ev, `,"x%d":"v"`, i)
		}
		ev.WriteString("}")
		body := []byte(ev.String())
		c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64}}
		codes := map[int]int{}
		var mu sync.Mutex
		for range b.N {
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() {
					code := post(c, p.key, body)
					mu.Lock()
					codes[code]++
					mu.Unlock()
				})
			}
			wg.Wait()
		}
		b.Logf("answers: %v (body %d bytes)", codes, len(body))
		b.ReportMetric(peakRSSMiB(b, ingest), "peak-RSS-MiB")
	})

	b.Run("64 slow uploads by one key, another at 1000 events/s", func(b *testing.B) {
		for range b.N {
			var held []net.Conn
			for range 64 {
				conn, err := net.Dial("tcp", p.ingestAt)
				if err != nil {
					b.Fatal(err)
				}
				fmt.Fprintf(conn, "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 100000\r\n\r\n{", slowKey)
				held = append(held, conn)
			}
			c := &http.Client{Timeout: 30 * time.Second}
			var non2xx, sent atomic.Int64
			tick := time.NewTicker(100 * time.Millisecond)
			var wg sync.WaitGroup
			for i := range 100 { // 10s, 100 events every 100ms
				<-tick.C
				var batch strings.Builder
				batch.WriteString("[")
				for j := range 100 {
					if j > 0 {
						batch.WriteString(",")
					}
					fmt.Fprintf(&batch, `{"specversion":"1.0","id":"%d-%d-%d","source":"steady","type":"t","subject":"s%d"}`, b.N, i, j, j)
				}
				batch.WriteString("]")
				body := []byte(batch.String())
				wg.Go(func() {
					req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+p.key)
					req.Header.Set("Content-Type", "application/cloudevents-batch+json")
					resp, err := c.Do(req)
					sent.Add(1)
					if err != nil || resp.StatusCode/100 != 2 {
						non2xx.Add(1)
					}
					if err == nil {
						resp.Body.Close()
					}
				})
			}
			tick.Stop()
			wg.Wait()
			for _, conn := range held {
				conn.Close()
			}
			b.Logf("the steady key: %d requests of 100 events, %d not 2xx", sent.Load(), non2xx.Load())
			b.ReportMetric(float64(non2xx.Load()), "non-2xx")
		}
	})
}
