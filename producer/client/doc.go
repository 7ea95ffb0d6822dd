// Package client publishes events to sluice ingest (POST /v1/events) from
// Go, with the retries the API asks of its clients and nothing beyond the
// standard library.
//
// Publish cuts a slice of events into requests within the server's limits
// (max_events and max_body_bytes, 1000 events and 1 MiB by default), sends
// them one request at a time as application/cloudevents-batch+json,
// optionally gzipped, and returns once each is accepted: a 202 whose
// {"accepted":n} counts every event of the request means Kafka acknowledged
// them all (any other 2xx is ErrNotAccepted). It retries 429 and 503 (and
// 408, 502, 504, timeouts and transport errors) with jittered exponential
// backoff that never comes before the answer's Retry-After, within bounded
// attempts and a bounded total wait, and gives up as soon as the caller's
// context is done.
//
// When it gives up on a 5xx, a timeout or a transport error, the outcome is
// unknown: some of the request's events may be stored, the others not;
// publish them again. A retry resends the very same bytes: every event
// keeps its (source, id), and an event without an id is given one, once,
// before the first attempt. Since sluice deduplicates by (source, id), a
// retry, or publishing the same events again after an error, never yields
// two rows.
//
// Refusals say what to fix: a *RejectedError (400 or 403) names each
// refused event by its index in the caller's slice, and 401, 413 and 415
// are *StatusError values matching ErrUnauthorized, ErrTooLarge and
// ErrUnsupportedMediaType.
//
//	c, err := client.New(client.Config{URL: "http://127.0.0.1:8080/v1/events", Key: key, Gzip: true})
//	if err != nil {
//		return err
//	}
//	events := []client.Event{{Source: "//shop/checkout", Type: "order.created", Subject: "customer-77",
//		Data: []byte(`{"amount":1299}`)}}
//	if n, err := c.Publish(ctx, events); err != nil {
//		return fmt.Errorf("%d of %d events published: %w", n, len(events), err)
//	}
package client
