package producer

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
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
