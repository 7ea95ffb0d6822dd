package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/producer"
	"github.com/sluicehq/sluice/producer/client"
)

// ingest serves the real ingest handler, with an appender that stands in for
// Kafka, so that the examples run without a broker.
func ingest(key string) *httptest.Server {
	h, err := producer.NewHandler(producer.Config{Keys: producer.Secrets(key)}, acknowledge{},
		producer.NewMetrics(prometheus.NewRegistry()), nil)
	if err != nil {
		log.Fatal(err)
	}
	return httptest.NewServer(h)
}

// acknowledge acknowledges every record at once, as Kafka would.
type acknowledge struct{}

func (acknowledge) WriteMessages(context.Context, ...kafka.Message) error { return nil }

func Example() {
	srv := ingest("shop-backend-key-0123456789")
	defer srv.Close()

	c, err := client.New(client.Config{URL: srv.URL + "/v1/events", Key: "shop-backend-key-0123456789", Gzip: true})
	if err != nil {
		log.Fatal(err)
	}
	events := []client.Event{
		{ID: "order-1042", Source: "//shop/checkout", Type: "order.created", Subject: "customer-77",
			Time: time.Date(2025, 5, 9, 14, 7, 0, 0, time.UTC), Data: []byte(`{"amount":1299}`)},
		{ID: "invoice-1042", Source: "//shop/billing", Type: "invoice.rendered", Subject: "customer-77",
			DataContentType: "application/pdf", Data: []byte("%PDF-1.7 …")}, // sent as data_base64
	}
	n, err := c.Publish(context.Background(), events)
	if err != nil {
		log.Fatalf("%d of %d events published: %v", n, len(events), err)
	}
	fmt.Println("published", n)
	// Output: published 2
}

// A 400 refuses the whole request; RejectedError names each refused event
// by its index in the slice given to Publish.
func ExampleRejectedError() {
	srv := ingest("shop-backend-key-0123456789")
	defer srv.Close()
	c, err := client.New(client.Config{URL: srv.URL + "/v1/events", Key: "shop-backend-key-0123456789"})
	if err != nil {
		log.Fatal(err)
	}
	events := []client.Event{
		{ID: "1", Source: "//shop/checkout", Type: "order.created"},
		{ID: "2", Source: "//shop/checkout"},
	}
	n, err := c.Publish(context.Background(), events)
	var rej *client.RejectedError
	if errors.As(err, &rej) {
		fmt.Println(n, "published;", rej.StatusCode, "refused the request:")
		for _, e := range rej.Events {
			fmt.Printf("  event %d (id %s): %s\n", e.Index, events[e.Index].ID, e.Reason)
		}
	}
	// Output:
	// 0 published; 400 refused the request:
	//   event 1 (id 2): invalid event: "type" must not be empty
}

// An event without an ID is given one before the first attempt, in the
// caller's slice: publishing the slice again sends the same ids, which the
// server deduplicates.
func ExampleClient_Publish() {
	srv := ingest("shop-backend-key-0123456789")
	defer srv.Close()
	c, err := client.New(client.Config{URL: srv.URL + "/v1/events", Key: "shop-backend-key-0123456789"})
	if err != nil {
		log.Fatal(err)
	}
	events := []client.Event{{Source: "//sensors/7", Type: "reading", Data: []byte(`{"celsius":21.5}`)}}
	if _, err := c.Publish(context.Background(), events); err != nil {
		log.Fatal(err)
	}
	first := events[0].ID
	if _, err := c.Publish(context.Background(), events); err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(first), "characters, unchanged:", events[0].ID == first)
	// Output: 36 characters, unchanged: true
}

// 401, 413 and 415 refuse the request itself: resending it cannot help.
func ExampleStatusError() {
	srv := ingest("shop-backend-key-0123456789")
	defer srv.Close()
	c, err := client.New(client.Config{URL: srv.URL + "/v1/events", Key: "a-revoked-key-0123456789"})
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.Publish(context.Background(), []client.Event{{Source: "//shop/checkout", Type: "order.created"}})
	fmt.Println(errors.Is(err, client.ErrUnauthorized))
	// Output: true
}

// OnAttempt sees every attempt, retried ones included: here, metrics of a
// publisher that runs beside a real ingest (so this example is not run).
func ExampleConfig_onAttempt() {
	var retried, throttled atomic.Int64
	c, err := client.New(client.Config{
		URL:         "http://127.0.0.1:8080/v1/events",
		Key:         "local-dev-key-0123456789",
		MaxInFlight: 8,
		MaxAttempts: 20,
		MaxWait:     2 * time.Minute,
		OnAttempt: func(a client.Attempt) {
			if a.Number > 1 {
				retried.Add(1)
			}
			if a.StatusCode == http.StatusTooManyRequests {
				throttled.Add(1)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Publish(ctx, []client.Event{{Source: "//shop/checkout", Type: "order.created"}}); err != nil {
		log.Print(err)
	}
	log.Printf("%d retries, %d answers 429", retried.Load(), throttled.Load())
}
