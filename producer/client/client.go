package client

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/jsonerror"
)

// Config configures a Client. URL and Key are required; the zero value of
// every other field is its default.
type Config struct {
	// URL is the ingest endpoint, such as http://127.0.0.1:8080/v1/events.
	URL string
	// Key is the bearer key sent with every request.
	Key string
	// HTTPClient sends the requests. Default: one whose transport keeps
	// MaxInFlight idle connections to the server (http.DefaultTransport
	// keeps 2, so a busier publisher would reconnect for most requests).
	HTTPClient *http.Client

	// MaxEvents bounds the events of one request: at most the server's
	// ingest.max_events. Default 1000, the server's default.
	MaxEvents int
	// MaxBodyBytes bounds a request body before compression (the server's
	// ingest.max_body_bytes holds for the decompressed body): at most the
	// server's. Default 1 MiB, the server's default.
	MaxBodyBytes int
	// MaxInFlight bounds the requests in flight at once, across every
	// Publish call of the Client. Default 4.
	MaxInFlight int
	// Gzip compresses request bodies (Content-Encoding: gzip).
	Gzip bool

	// AttemptTimeout bounds one attempt, from sending the request to reading
	// the answer; past it the attempt counts as a timeout and is retried.
	// Default 30s (the server waits up to its write_timeout, 10s by default,
	// for Kafka).
	AttemptTimeout time.Duration
	// MaxAttempts bounds the attempts at one request. Default 10.
	MaxAttempts int
	// MaxWait bounds the time one request spends waiting between attempts:
	// a retry that would take it past MaxWait is not made. Default 1m.
	MaxWait time.Duration
	// MinBackoff is the wait after a first failed attempt; it doubles with
	// each further one up to MaxBackoff, and each wait is drawn between
	// half of it and all of it. Defaults 100ms and 5s. A Retry-After is a
	// floor: the retry comes after it, by up to a quarter more.
	MinBackoff, MaxBackoff time.Duration

	// OnAttempt, if set, is called after every attempt, retried ones
	// included, from the goroutine that made it: for metrics, logs and load
	// tests. It must be safe for concurrent use and return quickly.
	OnAttempt func(Attempt)
}

// Attempt is what OnAttempt is told of one attempt at a request.
type Attempt struct {
	// RequestID is the request's X-Request-Id, the same on every attempt
	// (the server logs it).
	RequestID string
	Number    int // 1 for the first attempt at a request
	Events    int // events in the request
	Bytes     int // body bytes sent, after compression
	// StatusCode is the answer's status; 0 when no answer came.
	StatusCode int
	// Err is why no answer came (nil when one did). Timeout says whether
	// it was AttemptTimeout or the caller's deadline running out.
	Err     error
	Timeout bool
	// Duration is from sending the request to reading the answer.
	Duration time.Duration
	// RetryAfter is the answer's Retry-After; 0 when absent.
	RetryAfter time.Duration
	// Wait is how long the client waits before the next attempt; 0 when
	// none follows.
	Wait time.Duration
}

// Client publishes events to sluice ingest. Safe for concurrent use; one
// per process and server is enough, and keeps MaxInFlight meaningful.
type Client struct {
	cfg      Config
	http     *http.Client
	inFlight chan struct{}
	bodyHint atomic.Int64 // the size of the last body built
	// sleep waits d or until ctx is done; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
}

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.URL == "":
		return nil, errors.New("client: Config.URL is required")
	case cfg.Key == "":
		return nil, errors.New("client: Config.Key is required")
	case !validURL(cfg.URL):
		return nil, fmt.Errorf("client: Config.URL %q is not an http or https URL", cfg.URL)
	case cfg.MaxEvents < 0 || cfg.MaxBodyBytes < 0 || cfg.MaxInFlight < 0 || cfg.AttemptTimeout < 0 ||
		cfg.MaxAttempts < 0 || cfg.MaxWait < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0:
		return nil, errors.New("client: Config limits must not be negative")
	}
	setDefault(&cfg.MaxEvents, 1000)
	setDefault(&cfg.MaxBodyBytes, 1<<20)
	setDefault(&cfg.MaxInFlight, 4)
	setDefault(&cfg.AttemptTimeout, 30*time.Second)
	setDefault(&cfg.MaxAttempts, 10)
	setDefault(&cfg.MaxWait, time.Minute)
	setDefault(&cfg.MinBackoff, 100*time.Millisecond)
	setDefault(&cfg.MaxBackoff, 5*time.Second)
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	c := &Client{cfg: cfg, http: cfg.HTTPClient, inFlight: make(chan struct{}, cfg.MaxInFlight), sleep: sleep}
	if c.http == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = cfg.MaxInFlight
		c.http = &http.Client{Transport: t}
	}
	return c, nil
}

func validURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Publish sends events in as few requests as Config.MaxEvents and
// MaxBodyBytes allow, and returns how many were accepted: events[:n], each
// request of them answered 2xx with {"accepted":k}, k the number of its
// events. When n is less than len(events), err says why the request that
// starts at events[n] failed (or why events[n] could not be sent at all);
// events after that request were not sent.
//
// One Publish call sends one request at a time: the next one only after
// the one before was accepted. So the events of one subject within one
// call reach the log in the order given, never travel in two requests at
// once, and a failed request leaves no later event appended. Calls made at
// the same time from several goroutines, for throughput
// (Config.MaxInFlight bounds the requests of all of them), keep no order
// between them: publish a subject's events from one goroutine, one call
// after another. An attempt that timed out may still be appended after
// its retry was accepted; that copy is a duplicate, which deduplication by
// (source, id) drops, so the order of first arrival stands.
//
// Publish first gives every event without an ID a new one, in events itself,
// and never changes an ID afterwards: publishing events again — after an
// error, or a crash of the caller — is always safe, since the server's log
// is deduplicated by (source, id) downstream.
//
// err is one of: a *RejectedError (400, 403) or a *StatusError (any other
// non-2xx answer, the last one when retries ran out), matching
// ErrUnauthorized, ErrTooLarge or ErrUnsupportedMediaType for 401, 413 and
// 415; ErrNotAccepted, for a 2xx that did not accept every event sent;
// ErrEventTooLarge or ErrInvalidEvent, wrapped with the event's index; the
// transport error of the last attempt; or ctx's error.
//
// Whether the events of the failed request were appended depends on err.
// After a *RejectedError, a 401, 408, 413, 415 or 429, or ErrEventTooLarge
// or ErrInvalidEvent, none was. After a 5xx (503 when Kafka did not confirm
// the write, 502 and 504 from a proxy), ErrNotAccepted, a transport error
// or a timeout, or ctx's error once a request was sent, the outcome is
// unknown: some may be stored, the others not. Publishing events[n:] again
// resends the same ids, and an event stored twice yields one row.
func (c *Client) Publish(ctx context.Context, events []Event) (n int, err error) {
	for i := range events {
		if events[i].ID == "" {
			events[i].ID = newID()
		}
	}
	for n < len(events) {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		// A fresh buffer each time: the transport may still read an earlier
		// body after its answer came. Sized like the last body, so that
		// building it does not copy it over and over as it grows.
		hint := int(c.bodyHint.Load())
		body, end, err := c.nextBody(make([]byte, 0, min(hint+hint/8+512, c.cfg.MaxBodyBytes)), events, n)
		c.bodyHint.Store(int64(len(body)))
		if end > n {
			if serr := c.send(ctx, body, n, end); serr != nil {
				return n, serr
			}
			n = end
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// nextBody appends to buf the batch of events from start on that fits the
// limits, and returns the index after its last event. err concerns
// events[end] alone: it cannot be sent, and the events before it can.
func (c *Client) nextBody(buf []byte, events []Event, start int) ([]byte, int, error) {
	buf = append(buf, '[')
	end := start
	for ; end < len(events) && end-start < c.cfg.MaxEvents; end++ {
		mark := len(buf)
		if end > start {
			buf = append(buf, ',')
		}
		var err error
		buf, err = appendEvent(buf, &events[end])
		if err == nil && len(buf)+1 > c.cfg.MaxBodyBytes {
			if end == start {
				err = fmt.Errorf("%w: %d bytes, limit %d", ErrEventTooLarge, len(buf)+1-mark, c.cfg.MaxBodyBytes)
			} else {
				buf = buf[:mark] // this event starts the next request
				break
			}
		}
		if err != nil {
			return append(buf[:mark], ']'), end, fmt.Errorf("event %d: %w", end, err)
		}
	}
	return append(buf, ']'), end, nil
}

// send posts the batch events[start:end], whose JSON is body, retrying it
// (the same bytes, so the same ids) until it is accepted, refused, or out
// of attempts or time.
func (c *Client) send(ctx context.Context, body []byte, start, end int) error {
	if c.cfg.Gzip {
		body = compress(body)
	}
	reqID := newID()
	var waited time.Duration
	for attempt := 1; ; attempt++ {
		select {
		case c.inFlight <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		a, answer := c.attempt(ctx, body, reqID)
		<-c.inFlight
		a.Number, a.Events = attempt, end-start
		var err error
		switch {
		case a.StatusCode/100 == 2:
			c.report(a)
			return checkAccepted(a.StatusCode, answer, start, end)
		case a.StatusCode == 0 && ctx.Err() != nil:
			c.report(a)
			return ctx.Err()
		case a.StatusCode == 0:
			err = a.Err
		default:
			err = answerError(a.StatusCode, a.RetryAfter, answer, start)
		}
		retry := a.StatusCode == 0 || retryable(a.StatusCode)
		if retry && attempt < c.cfg.MaxAttempts {
			a.Wait = c.backoff(attempt, a.RetryAfter)
			if waited+a.Wait > c.cfg.MaxWait || pastDeadline(ctx, a.Wait) {
				a.Wait = 0 // the retry would come too late for the caller
			}
		}
		c.report(a)
		switch {
		case !retry:
			return err
		case a.Wait == 0:
			return &retriesExhausted{attempts: attempt, waited: waited, last: err}
		}
		if serr := c.sleep(ctx, a.Wait); serr != nil {
			return fmt.Errorf("%w (while waiting to retry after: %v)", serr, err)
		}
		waited += a.Wait
	}
}

func (c *Client) report(a Attempt) {
	if c.cfg.OnAttempt != nil {
		c.cfg.OnAttempt(a)
	}
}

// attempt sends body once and returns what came back, with the answer's
// body (bounded: it is read for its error messages).
func (c *Client) attempt(ctx context.Context, body []byte, reqID string) (Attempt, []byte) {
	a := Attempt{RequestID: reqID, Bytes: len(body)}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL, bytes.NewReader(body))
	if err != nil {
		a.Err = err
		return a, nil
	}
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	req.Header.Set("Authorization", "Bearer "+c.cfg.Key)
	req.Header.Set("X-Request-Id", reqID)
	if c.cfg.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	t0 := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		a.Duration = time.Since(t0)
		a.Err = err
		var netErr net.Error
		a.Timeout = errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout()
		return a, nil
	}
	// Read whole even when unused, so that the connection is reused.
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	a.Duration = time.Since(t0)
	a.StatusCode = resp.StatusCode
	a.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return a, answer
}

// checkAccepted is nil when a 2xx answer says that every event of the
// request events[start:end] was accepted ({"accepted":n}, n the number
// sent), and an ErrNotAccepted otherwise: a 2xx that says less is no
// acknowledgement (a proxy's answer, or a server that took part of the
// batch), and a retry might not change it.
func checkAccepted(code int, answer []byte, start, end int) error {
	var body struct {
		Accepted *int `json:"accepted"`
	}
	if json.Unmarshal(answer, &body) == nil && body.Accepted != nil && *body.Accepted == end-start {
		return nil
	}
	said := "no count of accepted events"
	if body.Accepted != nil {
		said = fmt.Sprintf("%d accepted", *body.Accepted)
	}
	return fmt.Errorf("%w: events %d to %d: ingest answered %d %s with %s, for %d events sent",
		ErrNotAccepted, start, end-1, code, http.StatusText(code), said, end-start)
}

// retryable reports whether an answer says the request may succeed later
// unchanged. 408 (the body arrived too slowly) and the proxies' 502 and 504
// count: resending is always safe.
func retryable(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// errorBody is the one shape of every error answer of ingest.
type errorBody = jsonerror.Body

// answerError is the error of an answer other than 2xx; indexes are mapped
// back to the caller's slice, in which the request started at start.
func answerError(code int, retryAfter time.Duration, answer []byte, start int) error {
	var body errorBody
	if json.Unmarshal(answer, &body) != nil && len(bytes.TrimSpace(answer)) > 0 {
		// Not ingest's answer (a proxy's, say): its start says what it is.
		body.Errors = append(body.Errors, jsonerror.Item{Error: string(bytes.ToValidUTF8(answer[:min(len(answer), 200)], nil))})
	}
	if code == http.StatusBadRequest || code == http.StatusForbidden {
		rej := &RejectedError{StatusCode: code}
		for _, e := range body.Errors {
			if e.Index != nil {
				rej.Events = append(rej.Events, EventError{Index: start + *e.Index, Reason: e.Error})
			} else {
				rej.Other = append(rej.Other, e.Error)
			}
		}
		return rej
	}
	se := &StatusError{StatusCode: code, RetryAfter: retryAfter}
	if len(body.Errors) > 0 {
		se.Message = body.Errors[0].Error
	}
	return se
}

// backoff is the wait before the attempt after attempt (1-based), given the
// last answer's Retry-After.
func (c *Client) backoff(attempt int, retryAfter time.Duration) time.Duration {
	b := c.cfg.MinBackoff
	for i := 1; i < attempt && b < c.cfg.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, c.cfg.MaxBackoff)
	d := b/2 + rand.N(b/2+1)
	if retryAfter > 0 {
		// Every client refused in one second is told the same Retry-After:
		// without jitter they would all come back together.
		d = max(d, retryAfter+rand.N(retryAfter/4+1))
	}
	return d
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(s, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// pastDeadline reports whether ctx ends before d has passed: waiting for it
// would only end in ctx's error instead of the answer's.
func pastDeadline(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return ok && time.Until(deadline) < d
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func compress(body []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed) // the level is valid
	_, _ = zw.Write(body)
	_ = zw.Close()
	return buf.Bytes()
}
