// Package producer owns the ingest side of sluice: the HTTP handler of
// POST /v1/events, its authentication, validation and limits. It appends
// each accepted request through an Appender: in sluice, the acks=all writer
// that internal/kafkaadmin builds.
//
// The handler answers 202 only after Kafka acknowledged every event of the
// request, and 503 only when Kafka itself cannot take the write. It never
// touches a database: a locked or failing target cannot change an ingest
// answer.
//
// Each Key has a name, which logs, metrics and the sluice-key header of
// every record it appended carry (never the key), and may be scoped to
// sources and event types. Keys may be given as SHA-256 digests, and
// SetKeys replaces them while the handler serves.
//
//	w := cluster.NewWriter(kafkaadmin.WriterConfig{Topic: "sluice.events"}) // acks=all, synchronous
//	defer w.Close()
//	h, err := producer.NewHandler(producer.Config{Keys: keys}, w, producer.NewMetrics(reg), logger)
//	if err != nil {
//		return err
//	}
//	mux.Handle("POST /v1/events", h)
package producer
