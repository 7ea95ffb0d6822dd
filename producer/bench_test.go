package producer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
)

// BenchmarkPublish measures publishing a request of 100 events through
// sluice's ingest handler (auth, validation, keying, acks=all) against a raw
// kafka-go Writer appending the same 100 records with the same settings, on
// the real broker of deploy/local (SLUICE_TEST_KAFKA). `make bench` prints
// the ratio of the two.
func BenchmarkPublish(b *testing.B) {
	broker := os.Getenv("SLUICE_TEST_KAFKA")
	if broker == "" {
		b.Skip("SLUICE_TEST_KAFKA is not set: run `make bench`")
	}
	topic := fmt.Sprintf("sluice.bench.%d", time.Now().UnixNano())
	cluster := kafkaadmin.New(kafkaadmin.Config{Brokers: []string{broker}})
	defer cluster.Close()
	if err := cluster.EnsureTopics(context.Background(), 1, kafkaadmin.EventsTopicSpec(topic, 6, time.Hour)); err != nil {
		b.Fatal(err)
	}
	defer cluster.Client().DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})

	const events = 100
	body := func(run, i int) []byte {
		var buf bytes.Buffer
		buf.WriteByte('[')
		for j := range events {
			if j > 0 {
				buf.WriteByte(',')
			}
			fmt.Fprintf(&buf, `{"specversion":"1.0","id":"%d-%d-%d","source":"bench","type":"bench.v1","subject":"customer-%d","data":{"amount":%d}}`, run, i, j, j%97, j)
		}
		buf.WriteByte(']')
		return buf.Bytes()
	}

	b.Run("sluice_ingest", func(b *testing.B) {
		w := cluster.NewWriter(kafkaadmin.WriterConfig{Topic: topic})
		defer w.Close()
		h, err := NewHandler(Config{Keys: Secrets("bench-key-0123456789")}, w, NewMetrics(prometheus.NewRegistry()), nil)
		if err != nil {
			b.Fatal(err)
		}
		bodies := make([][]byte, b.N)
		for i := range bodies {
			bodies[i] = body(1, i)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			req := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(bodies[i]))
			req.Header.Set("Content-Type", "application/cloudevents-batch+json")
			req.Header.Set("Authorization", "Bearer bench-key-0123456789")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
		b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
	})

	b.Run("raw_kafka_go", func(b *testing.B) {
		w := cluster.NewWriter(kafkaadmin.WriterConfig{Topic: topic}) // the same writer settings
		defer w.Close()
		batches := make([][]kafka.Message, b.N)
		for i := range batches {
			msgs := make([]kafka.Message, events)
			for j := range msgs {
				msgs[j] = kafka.Message{Key: []byte(fmt.Sprintf("customer-%d", j%97)),
					Value: []byte(fmt.Sprintf(`{"specversion":"1.0","id":"%d-%d-%d","source":"bench","type":"bench.v1","subject":"customer-%d","data":{"amount":%d}}`, 2, i, j, j%97, j))}
			}
			batches[i] = msgs
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if err := w.WriteMessages(context.Background(), batches[i]...); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkPublishConcurrent is BenchmarkPublish with c requests in flight:
// sluice's ingest over real HTTP (keep-alive connections, as a load balancer
// keeps them) against the raw Writer called by c goroutines with the same
// batches. One op is one request of 100 events.
func BenchmarkPublishConcurrent(b *testing.B) {
	broker := os.Getenv("SLUICE_TEST_KAFKA")
	if broker == "" {
		b.Skip("SLUICE_TEST_KAFKA is not set: run `make bench`")
	}
	topic := fmt.Sprintf("sluice.bench.%d", time.Now().UnixNano())
	cluster := kafkaadmin.New(kafkaadmin.Config{Brokers: []string{broker}})
	defer cluster.Close()
	if err := cluster.EnsureTopics(context.Background(), 1, kafkaadmin.EventsTopicSpec(topic, 6, time.Hour)); err != nil {
		b.Fatal(err)
	}
	defer cluster.Client().DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	const events = 100
	event := func(run string, i, j int) string {
		return fmt.Sprintf(`{"specversion":"1.0","id":"%s-%d-%d","source":"bench","type":"bench.v1","subject":"customer-%d","data":{"amount":%d}}`, run, i, j, j%97, j)
	}
	// parallel runs op(i) for i in [0, b.N) on c goroutines.
	parallel := func(b *testing.B, c int, op func(i int) error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range c {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= b.N {
						return
					}
					if err := op(i); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
	}
	for _, c := range []int{1, 4, 8, 16, 64} {
		b.Run(fmt.Sprintf("sluice_ingest_http/c=%d", c), func(b *testing.B) {
			w := cluster.NewWriter(kafkaadmin.WriterConfig{Topic: topic})
			defer w.Close()
			h, err := NewHandler(Config{Keys: Secrets("bench-key-0123456789"), MaxInFlight: 256}, w, NewMetrics(prometheus.NewRegistry()), nil)
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}}
			run := fmt.Sprintf("h%d-%d", c, time.Now().UnixNano())
			bodies := make([][]byte, b.N)
			for i := range bodies {
				var buf bytes.Buffer
				buf.WriteByte('[')
				for j := range events {
					if j > 0 {
						buf.WriteByte(',')
					}
					buf.WriteString(event(run, i, j))
				}
				buf.WriteByte(']')
				bodies[i] = buf.Bytes()
			}
			b.ResetTimer()
			parallel(b, c, func(i int) error {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/events", bytes.NewReader(bodies[i]))
				req.Header.Set("Content-Type", "application/cloudevents-batch+json")
				req.Header.Set("Authorization", "Bearer bench-key-0123456789")
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					return fmt.Errorf("status %d", resp.StatusCode)
				}
				return nil
			})
		})
		b.Run(fmt.Sprintf("raw_kafka_go/c=%d", c), func(b *testing.B) {
			w := cluster.NewWriter(kafkaadmin.WriterConfig{Topic: topic})
			defer w.Close()
			run := fmt.Sprintf("r%d-%d", c, time.Now().UnixNano())
			batches := make([][]kafka.Message, b.N)
			for i := range batches {
				msgs := make([]kafka.Message, events)
				for j := range msgs {
					msgs[j] = kafka.Message{Key: fmt.Appendf(nil, "customer-%d", j%97), Value: []byte(event(run, i, j))}
				}
				batches[i] = msgs
			}
			b.ResetTimer()
			parallel(b, c, func(i int) error { return w.WriteMessages(context.Background(), batches[i]...) })
		})
	}
}
