package producer_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/producer"
)

// Example wires the ingest handler to a Kafka writer and serves it. It needs
// a broker, so it is compiled but not run.
func Example() {
	cluster := kafkaadmin.New(kafkaadmin.Config{Brokers: []string{"localhost:9092"}})
	defer cluster.Close()
	keys := []producer.Key{{
		Name:    "shop-backend",
		SHA256:  "7b4fd7a8c3b1ce2d04c2b6cc2ad48e4c5ad9d1a1dc83d43b7bf6a9d0b1a5e7c2", // of the key, not the key
		Sources: []string{"//shop.example.com/"},
		Types:   []string{"com.example.shop.*"},
	}}
	reg := prometheus.NewRegistry()
	logger := slog.Default()

	w := cluster.NewWriter(kafkaadmin.WriterConfig{Topic: "sluice.events"})
	defer w.Close()
	h, err := producer.NewHandler(producer.Config{Keys: keys}, w, producer.NewMetrics(reg), logger)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/events", h)
	log.Fatal(http.ListenAndServe(":8080", mux))
}

// discardAppender stands in for Kafka: it acknowledges every record at once.
type discardAppender struct{}

func (discardAppender) WriteMessages(context.Context, ...kafka.Message) error { return nil }

// The handler appends through any Appender; *kafka.Writer is the real one.
func ExampleHandler() {
	h, err := producer.NewHandler(producer.Config{Keys: producer.Secrets("a-key-of-at-least-16-characters")},
		discardAppender{}, producer.NewMetrics(prometheus.NewRegistry()), nil)
	if err != nil {
		log.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/events",
		strings.NewReader(`{"specversion":"1.0","id":"1","source":"example","type":"example.v1"}`))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("Authorization", "Bearer a-key-of-at-least-16-characters")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output: 202 {"accepted":1}
}

// A key may be scoped to source prefixes and types; an event outside its
// scope refuses the whole request with 403, naming the event.
func ExampleKey() {
	h, err := producer.NewHandler(producer.Config{Keys: []producer.Key{{
		Name:    "billing",
		Secret:  "billing-key-0123456789",
		Sources: []string{"//billing/"},
		Types:   []string{"com.example.invoice.*"},
	}}}, discardAppender{}, producer.NewMetrics(prometheus.NewRegistry()), nil)
	if err != nil {
		log.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(
		`[{"specversion":"1.0","id":"1","source":"//billing/eu","type":"com.example.invoice.paid"},`+
			`{"specversion":"1.0","id":"2","source":"//shop/eu","type":"com.example.invoice.paid"}]`))
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	req.Header.Set("Authorization", "Bearer billing-key-0123456789")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output: 403 {"errors":[{"index":1,"error":"key \"billing\" may not publish source \"//shop/eu\" (allowed: sources under \"//billing/\")"}]}
}
