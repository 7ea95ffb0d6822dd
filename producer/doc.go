// Package producer owns the ingest side of sluice: the HTTP handler of
// POST /v1/events, its authentication, validation and limits, and the Kafka
// writer that appends each accepted request with acks=all.
//
// The handler answers 202 only after Kafka acknowledged every event of the
// request, and 503 only when Kafka itself cannot take the write. It never
// touches a database: a locked or failing target cannot change an ingest
// answer.
//
//	w := producer.NewWriter(producer.WriterConfig{Brokers: brokers, Topic: "sluice.events"})
//	defer w.Close()
//	h, err := producer.NewHandler(producer.Config{Keys: keys}, w, metrics, logger)
//	mux.Handle("POST /v1/events", h)
package producer
