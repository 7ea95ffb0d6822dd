// Package tracing owns sluice's OpenTelemetry setup: the exporter (OTLP
// over HTTP, off unless configured), the W3C trace-context propagator, and
// the carrier that puts a trace context in a Kafka record's headers, so that
// one event's trace goes from the publisher's request through the produce
// to the transaction that applied it.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// Config says where spans go. The zero value (no Endpoint) exports nothing.
type Config struct {
	// Endpoint is the OTLP/HTTP collector's base URL, e.g.
	// http://otel-collector:4318 (spans go to its /v1/traces).
	Endpoint string
	// ServiceName names the process in the traces: sluice-ingest,
	// sluice-apply-<target>.
	ServiceName string
	// SampleRatio is the share of new traces recorded (a request that
	// arrives with a sampled trace context is always recorded). Default 1.
	SampleRatio float64
}

// Propagator is W3C trace context (traceparent, tracestate), the format of
// HTTP headers, of the CloudEvents distributed-tracing extension and of the
// Kafka headers sluice writes.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Setup installs the global tracer provider and propagator for cfg and
// returns the function that flushes and stops the exporter. With no
// Endpoint it installs nothing and tracing costs nothing.
func Setup(ctx context.Context, cfg Config) (func(context.Context) error, error) {
	if cfg.Endpoint == "" {
		return func(context.Context) error { return nil }, nil
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tracing.endpoint %q: want http(s)://host:port", cfg.Endpoint)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(u.JoinPath("v1", "traces").String()),
		otlptracehttp.WithTimeout(5 * time.Second)}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	ratio := cfg.SampleRatio
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	res, err := sdkresource.Merge(sdkresource.Default(), sdkresource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(cfg.ServiceName)))
	if err != nil && !errors.Is(err, sdkresource.ErrSchemaURLConflict) {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithResource(res), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(Propagator)
	return tp.Shutdown, nil
}

// Headers is a propagation carrier over a Kafka record's headers.
type Headers struct{ H *[]kafka.Header }

// Get returns the value of the first header named key.
func (c Headers) Get(key string) string {
	for _, h := range *c.H {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Set replaces (or adds) the header named key.
func (c Headers) Set(key, value string) {
	for i := range *c.H {
		if (*c.H)[i].Key == key {
			(*c.H)[i].Value = []byte(value)
			return
		}
	}
	*c.H = append(*c.H, kafka.Header{Key: key, Value: []byte(value)})
}

// Keys lists the header names.
func (c Headers) Keys() []string {
	keys := make([]string, len(*c.H))
	for i, h := range *c.H {
		keys[i] = h.Key
	}
	return keys
}

// FromRecord is the trace context a record carries, if any.
func FromRecord(headers []kafka.Header) trace.SpanContext {
	h := headers
	return trace.SpanContextFromContext(Propagator.Extract(context.Background(), Headers{H: &h}))
}

// FromTraceparent is the span context of a traceparent value (and its
// tracestate), as the CloudEvents distributed-tracing extension carries it.
func FromTraceparent(traceparent, tracestate string) trace.SpanContext {
	carrier := propagation.MapCarrier{"traceparent": traceparent}
	if tracestate != "" {
		carrier["tracestate"] = tracestate
	}
	return trace.SpanContextFromContext(Propagator.Extract(context.Background(), carrier))
}
