package producer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/internal/jsonerror"
	"github.com/sluicehq/sluice/internal/tracing"
	"github.com/sluicehq/sluice/schema"
)

// tracer is the global provider's: a no-op until tracing.Setup installs
// one, and then every request is a server span and every append a producer
// span whose context the records carry.
var tracer = otel.Tracer("github.com/sluicehq/sluice/producer")

// maxEventLinks bounds the links of one produce span to the trace contexts
// that events carried themselves (the CloudEvents tracing extension).
const maxEventLinks = 128

// Config configures the ingest handler. The zero value of every field but
// Keys works.
type Config struct {
	// Keys are the accepted bearer keys. At least one is required: sluice
	// has no unauthenticated mode. Handler.SetKeys replaces them while
	// serving.
	Keys []Key
	// MaxBodyBytes bounds a request body; larger ones get 413.
	// Default 1 MiB.
	MaxBodyBytes int64
	// MaxEvents bounds the events in one batch; more get 413. Default 1000.
	MaxEvents int
	// WriteTimeout bounds the wait for Kafka's acknowledgement; past it the
	// answer is 503. Default 10s.
	WriteTimeout time.Duration
	// RetryAfter is the Retry-After sent with 503. Default 1s.
	RetryAfter time.Duration
	// MaxInFlight bounds the requests being served at once: past it the
	// answer is 503 with Retry-After, so memory stays bounded (at most
	// MaxInFlight × MaxBodyBytes of bodies) whatever clients do. A request
	// takes its slot once its key is authenticated (an unauthenticated one
	// holds none) and keeps it until it is answered. Default 64.
	MaxInFlight int
	// MaxInFlightPerKey bounds the requests of one key being served at
	// once, within MaxInFlight: past it that key's answer is 503 with
	// Retry-After while the other keys are still served. A slot is held
	// through the body's upload, which may take the listener's whole read
	// timeout: without this bound one key holder's slow uploads could take
	// every slot and turn every other publisher away. Default MaxInFlight/4
	// (at least 1): it takes four keys at their bound to fill MaxInFlight,
	// and one key may still send 16 requests at once by default, four times
	// what the Go client (producer/client) sends.
	MaxInFlightPerKey int
	// RatePerKey limits each key to this many events per second, with a
	// burst of MaxEvents (or the rate, if larger); over it the answer is 429
	// with Retry-After and nothing is appended. 0, the default: unlimited.
	RatePerKey float64
	// Tracing says that spans are exported (sluice's tracing.endpoint is
	// set). Only then do records carry a caller's W3C tracestate, bounded
	// to the 512 characters the W3C recommendation has vendors propagate
	// (and its 32 members): nothing reads it with tracing off, and every
	// one of a request's up to MaxEvents records would carry a copy of it,
	// up to 16 KiB each. The caller's traceparent is carried either way.
	// Default false.
	Tracing bool
}

// Validate reports the first field at fault.
func (c Config) Validate() error {
	if _, err := newKeyring(c.Keys); err != nil {
		return err
	}
	if c.MaxBodyBytes < 0 || c.MaxEvents < 0 || c.WriteTimeout < 0 || c.RetryAfter < 0 || c.RatePerKey < 0 || c.MaxInFlight < 0 || c.MaxInFlightPerKey < 0 {
		return fmt.Errorf("%w: ingest limits must not be negative", ErrInvalidConfig)
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxEvents == 0 {
		c.MaxEvents = 1000
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 64
	}
	if c.MaxInFlightPerKey == 0 {
		c.MaxInFlightPerKey = max(c.MaxInFlight/4, 1)
	}
	c.MaxInFlightPerKey = min(c.MaxInFlightPerKey, c.MaxInFlight)
}

// Handler serves POST /v1/events. Safe for concurrent use.
type Handler struct {
	cfg     Config
	keys    atomic.Pointer[keyring]
	limits  *keyLimits
	out     Appender
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time
	// inFlight counts the requests being served, in all and by key.
	inFlight *slots
	// pending holds the partition keys of writes answered before Kafka
	// settled them.
	pending *unsettled
}

// NewHandler validates cfg and returns the ingest handler appending to out.
func NewHandler(cfg Config, out Appender, metrics *Metrics, log *slog.Logger) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keys := cfg.Keys
	cfg.Keys = nil // the handler keeps digests only
	h := &Handler{cfg: cfg, limits: newKeyLimits(cfg.RatePerKey, max(cfg.MaxEvents, int(cfg.RatePerKey))),
		out: out, metrics: metrics, log: log, now: time.Now, inFlight: newSlots(cfg.MaxInFlight, cfg.MaxInFlightPerKey),
		pending: newUnsettled()}
	if err := h.SetKeys(keys); err != nil {
		return nil, err
	}
	return h, nil
}

// SetKeys replaces the accepted keys at once: a request is checked against
// either the old set or the new one, never a mix, and none is refused for
// the change itself. Invalid keys are an error and change nothing. A rate
// limit follows a key by name, so renaming a key starts it a new bucket.
func (h *Handler) SetKeys(keys []Key) error {
	ring, err := newKeyring(keys)
	if err != nil {
		return err
	}
	h.keys.Store(ring)
	if h.metrics != nil {
		for _, name := range ring.names() {
			h.metrics.events.WithLabelValues(name) // a series from the start, at 0
		}
	}
	return nil
}

// HoldsKey reports whether secret is one of the accepted keys. An admin
// token must not be one: a publisher must not be able to pause a target.
func (h *Handler) HoldsKey(secret string) bool {
	_, ok := h.keys.Load().lookup(secret)
	return ok
}

// KeyNames lists the accepted keys by name.
func (h *Handler) KeyNames() []string { return h.keys.Load().names() }

// errorBody and errorItem are the one shape of every error answer (see
// package jsonerror). Index is present only when the fault is one event's.
type (
	errorBody = jsonerror.Body
	errorItem = jsonerror.Item
)

type answer struct {
	code   int
	body   any
	header map[string]string
	// after runs, in order, once the answer is written: a write answered
	// before Kafka settled it is waited for there, with its slot still
	// held, so that memory stays bounded while a broker stalls.
	after []func()
}

func fail(code int, msg string) answer {
	return answer{code: code, body: errorBody{Errors: []errorItem{{Error: msg}}}}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	reqID := r.Header.Get("X-Request-Id")
	if reqID == "" || len(reqID) > 128 {
		reqID = newRequestID()
	}
	w.Header().Set("X-Request-Id", reqID)
	parent := h.boundTraceState(tracing.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
	ctx, span := tracer.Start(parent, "POST /v1/events",
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("sluice.request_id", reqID)))
	defer span.End()
	r = r.WithContext(ctx)
	a, events, keyName := h.serve(r)
	span.SetAttributes(attribute.Int("http.response.status_code", a.code), attribute.Int("sluice.events", events),
		attribute.String("sluice.key", keyName))
	if a.code >= 500 {
		span.SetStatus(codes.Error, http.StatusText(a.code))
	}
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	body, _ := json.Marshal(a.body)
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	// The length lets the client read the whole answer while a wait in
	// a.after still holds the request.
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(a.code)
	_, _ = w.Write(body)
	if len(a.after) > 0 {
		if f, ok := w.(http.Flusher); ok {
			f.Flush() // the client has its answer before the waits below
		}
		for _, fn := range a.after {
			fn()
		}
	}

	elapsed := h.now().Sub(start)
	if h.metrics != nil {
		h.metrics.requests.WithLabelValues(strconv.Itoa(a.code), keyName).Inc()
		h.metrics.duration.Observe(elapsed.Seconds())
		if a.code == http.StatusAccepted {
			h.metrics.events.WithLabelValues(keyName).Add(float64(events))
		}
	}
	level := slog.LevelDebug
	if a.code >= 500 {
		level = slog.LevelWarn
	}
	h.log.Log(r.Context(), level, "ingest request", "request_id", reqID, "code", a.code, "key", keyName,
		"events", events, "duration_ms", elapsed.Milliseconds())
}

// maxReportedFaults bounds the per-event errors of a 400: enough to fix a
// client, never a body larger than the request.
const maxReportedFaults = 100

// noKey names requests that carried no accepted key, in metrics and logs.
const noKey = "none"

// serve answers r, with the number of events appended and the name of the
// key that sent them.
func (h *Handler) serve(r *http.Request) (answer, int, string) {
	key, ok := h.keys.Load().match(r.Header.Get("Authorization"))
	if !ok {
		a := fail(http.StatusUnauthorized, "missing or invalid API key (send Authorization: Bearer <key>)")
		a.header = map[string]string{"WWW-Authenticate": `Bearer realm="sluice"`}
		return a, 0, noKey
	}
	// The slot is taken before the body is read, which is what it bounds,
	// and only for a known key, whose share it counts against.
	var a answer
	switch h.inFlight.take(key.name) {
	case allSlotsTaken:
		a = fail(http.StatusServiceUnavailable, fmt.Sprintf("ingest is serving its limit of %d requests at once; retry", h.cfg.MaxInFlight))
	case keySlotsTaken:
		a = fail(http.StatusServiceUnavailable, fmt.Sprintf("ingest is serving this key's limit of %d requests at once; retry", h.cfg.MaxInFlightPerKey))
	default:
		a, n := h.serveKey(r, key)
		a.after = append(a.after, func() { h.inFlight.release(key.name) }) // after any wait for Kafka
		return a, n, key.name
	}
	a.header = map[string]string{"Retry-After": strconv.Itoa(h.retryAfter())}
	return a, 0, key.name
}

func (h *Handler) serveKey(r *http.Request, key *scopedKey) (answer, int) {
	binary := schema.IsBinaryMode(r.Header)
	mediaType := ""
	if !binary {
		var err error
		if mediaType, err = schema.ParseMediaType(r.Header.Get("Content-Type")); err != nil {
			return fail(http.StatusUnsupportedMediaType, err.Error()+" (or send one event in binary mode, with ce-* headers)"), 0
		}
	}
	if r.ContentLength > h.cfg.MaxBodyBytes {
		return fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes is larger than the limit of %d", r.ContentLength, h.cfg.MaxBodyBytes)), 0
	}
	body, refused := readBody(r, h.cfg.MaxBodyBytes)
	if refused != nil {
		return *refused, 0
	}
	if binary {
		raw, err := schema.BinaryEvent(r.Header, body)
		if err != nil {
			return answer{code: http.StatusBadRequest, body: errorBody{Errors: []errorItem{{Index: new(int), Error: err.Error()}}}}, 0
		}
		body, mediaType = raw, schema.MediaTypeEvent
	}
	events, faults, err := schema.DecodeRequest(mediaType, body, h.cfg.MaxEvents)
	switch {
	case errors.Is(err, schema.ErrTooManyEvents):
		return fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("more than the limit of %d events per request", h.cfg.MaxEvents)), 0
	case err != nil:
		return fail(http.StatusBadRequest, err.Error()), 0
	case len(faults) > 0:
		return refuseEvents(http.StatusBadRequest, faults[:min(len(faults), maxReportedFaults)], len(faults)), 0
	case len(events) == 0:
		return answer{code: http.StatusAccepted, body: map[string]int{"accepted": 0}}, 0
	}
	if out, n := key.refuses(events, maxReportedFaults); n > 0 {
		return refuseEvents(http.StatusForbidden, out, n), 0
	}
	if wait := h.limits.take(key.name, len(events), h.now()); wait > 0 {
		a := fail(http.StatusTooManyRequests, fmt.Sprintf("this key may publish %g events per second; retry after %v", h.cfg.RatePerKey, wait.Round(time.Millisecond)))
		a.header = map[string]string{"Retry-After": strconv.Itoa(int(math.Ceil(wait.Seconds())))}
		return a, 0
	}
	return h.append(r.Context(), events, key.name)
}

// refuseEvents is the answer naming each refused event of shown, out of
// total refused in all.
func refuseEvents(code int, shown []schema.EventError, total int) answer {
	items := make([]errorItem, 0, len(shown)+1)
	for _, f := range shown {
		items = append(items, errorItem{Index: &f.Index, Error: f.Err.Error()})
	}
	if total > len(shown) {
		what := "invalid events"
		switch code {
		case http.StatusForbidden:
			what = "events outside the key's scope"
		case http.StatusRequestEntityTooLarge:
			what = "events too large for the event log"
		}
		items = append(items, errorItem{Error: fmt.Sprintf("and %d more %s", total-len(shown), what)})
	}
	return answer{code: code, body: errorBody{Errors: items}}
}

// append writes events to Kafka and answers 202 once every in-sync replica
// has them, 503 otherwise.
func (h *Handler) append(ctx context.Context, events []schema.Event, keyName string) (answer, int) {
	msgs := make([]kafka.Message, len(events))
	headers := []kafka.Header{{Key: "content-type", Value: []byte(schema.MediaTypeEvent)}, {Key: KeyHeader, Value: []byte(keyName)}}
	var links []trace.Link
	if h.cfg.Tracing {
		links = eventLinks(events)
	}
	ctx, span := tracer.Start(ctx, "produce", trace.WithSpanKind(trace.SpanKindProducer), trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(events))))
	defer span.End()
	// Every record carries the produce span's context (or, with tracing
	// off, the caller's traceparent alone: see boundTraceState), for the
	// applier to continue.
	tracing.Propagator.Inject(ctx, tracing.Headers{H: &headers})
	for i := range events {
		msgs[i] = kafka.Message{
			Key:     []byte(events[i].PartitionKey()),
			Value:   events[i].Raw,
			Headers: headers,
		}
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.WriteTimeout)
	defer cancel()
	if err := h.pending.wait(ctx, msgs); err != nil {
		// An earlier write of one of these keys has not settled: nothing
		// of this request was handed to Kafka.
		h.log.Warn("an earlier write of the same partition keys is not settled yet", "events", len(msgs), "key", keyName)
		span.SetStatus(codes.Error, "earlier write not settled")
		a := fail(http.StatusServiceUnavailable, "an earlier write of these events' partition keys is not settled by the event log yet; nothing of this request was appended: retry")
		a.header = map[string]string{"Retry-After": strconv.Itoa(h.retryAfter())}
		return a, 0
	}
	// The write goes on whatever the request's deadline (kafka-go keeps a
	// timed-out write queued and may append it later): the deadline only
	// decides when the client is answered.
	written := make(chan error, 1)
	go func() { written <- h.out.WriteMessages(context.WithoutCancel(ctx), msgs...) }()
	var err error
	select {
	case err = <-written:
	case <-ctx.Done():
		settled := h.pending.mark(partitionKeys(msgs))
		h.log.Warn("kafka did not confirm the write in time; answering 503, its outcome unknown", "events", len(msgs), "key", keyName)
		span.SetStatus(codes.Error, "kafka write not confirmed in time")
		a := fail(http.StatusServiceUnavailable, "the event log did not confirm the write in time: some of the events may be stored, the rest not; send the same events (the same ids) again, which stores each once")
		// The request goes on after its answer (waiting for Kafka), so its
		// connection cannot carry the client's next one.
		a.header = map[string]string{"Retry-After": strconv.Itoa(h.retryAfter()), "Connection": "close"}
		a.after = []func(){func() {
			if err := <-written; err != nil {
				h.log.Warn("a write answered 503 failed after all", "events", len(msgs), "key", keyName, "err", err)
			}
			settled()
		}}
		return a, 0
	}
	if err != nil {
		if a, ok := refuseTooLarge(err, events, msgs); ok {
			h.log.Info("events too large for the event log", "key", keyName, "err", err)
			span.SetStatus(codes.Error, "record too large")
			return a, 0
		}
		// The error names brokers and topics: it goes to the log, not to
		// the client.
		h.log.Warn("kafka write failed", "events", len(msgs), "key", keyName, "err", err)
		span.SetStatus(codes.Error, "kafka write failed")
		a := fail(http.StatusServiceUnavailable, "the event log did not confirm the write: some of the events may be stored, the rest not; send the same events (the same ids) again, which stores each once")
		a.header = map[string]string{"Retry-After": strconv.Itoa(h.retryAfter())}
		return a, 0
	}
	return answer{code: http.StatusAccepted, body: map[string]int{"accepted": len(events)}}, len(events)
}

// partitionKeys are msgs' keys, once each.
func partitionKeys(msgs []kafka.Message) []string {
	seen := make(map[string]struct{}, len(msgs))
	keys := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if _, ok := seen[string(m.Key)]; !ok {
			seen[string(m.Key)] = struct{}{}
			keys = append(keys, string(m.Key))
		}
	}
	return keys
}

// refuseTooLarge is the answer to a write that failed for the size of its
// records: 413 naming each event too large for the event log, which no
// retry changes (a 503 would have the client retry it for ever). The size
// that counts is the record's, the event as stored: binary-mode data that
// is not JSON is stored as base64, a third larger than the body.
//
// kafka-go refuses a record over the writer's BatchBytes before it writes
// any, naming the first (kafka.MessageTooLargeError); a record's size is
// then a constant plus its key and value (the headers are the same on
// every record of a request), so any later record at least as long is over
// too. A broker that refuses a record over the topic's max.message.bytes
// refuses it alone, and the request's other records may be appended: that
// stays a 503, whose outcome is unknown, since a 4xx promises that nothing
// was appended.
func refuseTooLarge(err error, events []schema.Event, msgs []kafka.Message) (answer, bool) {
	var faults []schema.EventError
	tooLarge := func(i int) {
		msg := fmt.Sprintf("the event is %d bytes as stored, more than the event log takes in one record", len(msgs[i].Value))
		if events[i].DataBase64 != nil {
			msg += " (its data is stored as base64, a third larger than sent)"
		}
		faults = append(faults, schema.EventError{Index: i, Err: errors.New(msg)})
	}
	var first kafka.MessageTooLargeError
	switch {
	case errors.As(err, &first):
		i := slices.IndexFunc(msgs, func(m kafka.Message) bool { return sameBytes(m.Value, first.Message.Value) })
		if i < 0 {
			return answer{}, false
		}
		size := len(msgs[i].Key) + len(msgs[i].Value)
		for j := i; j < len(msgs); j++ {
			if len(msgs[j].Key)+len(msgs[j].Value) >= size {
				tooLarge(j)
			}
		}
	}
	if len(faults) == 0 {
		return answer{}, false
	}
	return refuseEvents(http.StatusRequestEntityTooLarge, faults[:min(len(faults), maxReportedFaults)], len(faults)), true
}

// sameBytes reports whether a and b are one slice of one array: the record
// kafka-go names is a copy of the kafka.Message, not of its bytes.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// eventLinks are the trace contexts events carried in the CloudEvents
// distributed-tracing extension (traceparent, tracestate attributes).
func eventLinks(events []schema.Event) []trace.Link {
	var links []trace.Link
	for i := range events {
		tp, ok := events[i].Extensions["traceparent"]
		if !ok || len(links) == maxEventLinks {
			continue
		}
		var parent, state string
		if json.Unmarshal(tp, &parent) != nil {
			continue
		}
		if ts, ok := events[i].Extensions["tracestate"]; ok {
			_ = json.Unmarshal(ts, &state)
		}
		if sc := tracing.FromTraceparent(parent, state); sc.IsValid() {
			sc = sc.WithTraceState(boundedTraceState(sc.TraceState()))
			links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("cloudevents.event_id", events[i].ID)}})
		}
	}
	return links
}

// W3C trace context's bounds on a tracestate: at most 32 members (the
// parser refuses more), and vendors need propagate no more than 512
// characters, dropping members over 128 first.
const (
	maxTraceStateLen    = 512
	maxTraceStateMember = 128
)

// boundTraceState is ctx with the tracestate of its remote span context
// dropped, with tracing off, or bounded: a caller's tracestate would
// otherwise ride in every record of the request (see Config.Tracing).
func (h *Handler) boundTraceState(ctx context.Context) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || sc.TraceState().Len() == 0 {
		return ctx
	}
	var ts trace.TraceState
	if h.cfg.Tracing {
		ts = boundedTraceState(sc.TraceState())
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc.WithTraceState(ts))
}

// boundedTraceState is ts cut to maxTraceStateLen characters as W3C trace
// context says: members longer than maxTraceStateMember go first, then
// members from the end.
func boundedTraceState(ts trace.TraceState) trace.TraceState {
	if len(ts.String()) <= maxTraceStateLen {
		return ts
	}
	var members []string
	ts.Walk(func(key, value string) bool {
		if m := key + "=" + value; len(m) <= maxTraceStateMember {
			members = append(members, m)
		}
		return true
	})
	for len(strings.Join(members, ",")) > maxTraceStateLen {
		members = members[:len(members)-1]
	}
	out, err := trace.ParseTraceState(strings.Join(members, ","))
	if err != nil { // members of a valid tracestate make a valid one
		return trace.TraceState{}
	}
	return out
}

// retryAfter is RetryAfter, stretched at random by up to twice, in whole
// seconds: clients told to come back together would come back together.
func (h *Handler) retryAfter() int {
	base := max(int(h.cfg.RetryAfter.Round(time.Second).Seconds()), 1)
	return base + mrand.IntN(2*base)
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
