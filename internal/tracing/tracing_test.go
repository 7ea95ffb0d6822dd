package tracing

import (
	"context"
	"testing"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"
)

// TestATraceContextRidesInRecordHeaders: what Inject writes into a record's
// headers, FromRecord reads back, beside the headers already there, and a
// second Inject replaces rather than repeats.
func TestATraceContextRidesInRecordHeaders(t *testing.T) {
	sc := FromTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=x")
	if !sc.IsValid() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || !sc.IsSampled() {
		t.Fatalf("FromTraceparent: %+v", sc)
	}
	headers := []kafka.Header{{Key: "content-type", Value: []byte("application/cloudevents+json")}}
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), sc)
	Propagator.Inject(ctx, Headers{H: &headers})
	Propagator.Inject(ctx, Headers{H: &headers})
	if len(headers) != 3 { // content-type, traceparent, tracestate
		t.Fatalf("headers after two injects: %+v", headers)
	}
	got := FromRecord(headers)
	if got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || got.TraceState().String() != "vendor=x" {
		t.Fatalf("FromRecord: %+v, want %+v", got, sc)
	}
	if FromRecord(nil).IsValid() || FromTraceparent("garbage", "").IsValid() {
		t.Fatal("a record without a trace context, or a bad traceparent, gave a valid one")
	}
}

func TestSetupWithoutAnEndpointInstallsNothing(t *testing.T) {
	stop, err := Setup(context.Background(), Config{})
	if err != nil || stop(context.Background()) != nil {
		t.Fatalf("Setup without an endpoint: %v", err)
	}
	if _, err := Setup(context.Background(), Config{Endpoint: "not a url"}); err == nil {
		t.Fatal("a bad endpoint was accepted")
	}
}
