package client

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Errors that a *StatusError matches with errors.Is, by its status code. Each
// one is the request's fault, so resending it unchanged cannot help.
var (
	// ErrUnauthorized: 401, the key is missing, wrong or revoked.
	ErrUnauthorized = errors.New("the server refused the key (401)")
	// ErrTooLarge: 413, the request is over the server's max_body_bytes or
	// max_events: Config.MaxBodyBytes or Config.MaxEvents is larger than the
	// server's.
	ErrTooLarge = errors.New("the request is larger than the server takes (413)")
	// ErrUnsupportedMediaType: 415, the server does not take the request's
	// Content-Type or Content-Encoding (gzip from a server behind a proxy
	// that strips it, for example).
	ErrUnsupportedMediaType = errors.New("the server does not take this media type or encoding (415)")
)

// ErrNotAccepted: a 2xx answer that did not say {"accepted":n} for the n
// events of the request, such as a proxy's 200 or a server that took part
// of the batch. The outcome is unknown: some of the request's events may be
// stored. Publishing them again (the same ids) is safe.
var ErrNotAccepted = errors.New("ingest did not confirm every event of the request")

// Errors about one event of the caller's, found before anything of it is
// sent. They come wrapped with the event's index.
var (
	// ErrEventTooLarge: the event alone makes a body over
	// Config.MaxBodyBytes, so no request can carry it.
	ErrEventTooLarge = errors.New("event is larger than the body limit")
	// ErrInvalidEvent: the event cannot be encoded without changing it,
	// such as a string that is not valid UTF-8 (an encoder that replaced the
	// bad bytes could turn two ids into one, and deduplication would drop an
	// event).
	ErrInvalidEvent = errors.New("invalid event")
)

// StatusError is an answer other than 2xx that is not a *RejectedError: the
// status, and the server's message. After retries ran out it is the last
// answer (429, 503, …) and RetryAfter is what that answer asked for. After a
// 5xx the outcome of the request is unknown: some of its events may be
// stored; after a 4xx none is.
type StatusError struct {
	StatusCode int
	Message    string
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("ingest answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Is matches ErrUnauthorized, ErrTooLarge and ErrUnsupportedMediaType by
// status code.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrTooLarge:
		return e.StatusCode == http.StatusRequestEntityTooLarge
	case ErrUnsupportedMediaType:
		return e.StatusCode == http.StatusUnsupportedMediaType
	}
	return false
}

// RejectedError is a 400 or 403 answer: the server refused the whole request
// and appended none of its events. Events names the refused ones by their
// index in the slice given to Publish; the server lists at most 100, and
// says how many more in Other.
type RejectedError struct {
	StatusCode int // 400: invalid events or body; 403: events outside the key's scope
	Events     []EventError
	// Other holds the server's messages that name no event: a malformed
	// body, or "and N more invalid events".
	Other []string
}

// EventError is why the server refused one event.
type EventError struct {
	Index  int // in the slice given to Publish
	Reason string
}

func (e *RejectedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ingest refused the request (%d %s)", e.StatusCode, http.StatusText(e.StatusCode))
	sep := ": "
	for _, ev := range e.Events[:min(len(e.Events), 3)] {
		fmt.Fprintf(&b, "%sevent %d: %s", sep, ev.Index, ev.Reason)
		sep = "; "
	}
	if len(e.Events) > 3 {
		fmt.Fprintf(&b, "%s%d more events", sep, len(e.Events)-3)
	}
	for _, o := range e.Other {
		b.WriteString(sep + o)
		sep = "; "
	}
	return b.String()
}

// retriesExhausted wraps the last error of a request that ran out of
// attempts or of Config.MaxWait.
type retriesExhausted struct {
	attempts int
	waited   time.Duration
	last     error
}

func (e *retriesExhausted) Error() string {
	return fmt.Sprintf("gave up after %d attempts (%v waiting): %v", e.attempts, e.waited.Round(time.Millisecond), e.last)
}

func (e *retriesExhausted) Unwrap() error { return e.last }
