package consumer

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/internal/targetdb"
	"github.com/sluicehq/sluice/internal/tracing"
)

// tracer is the global provider's: a no-op unless tracing is configured.
var tracer = otel.Tracer("github.com/sluicehq/sluice/consumer")

// maxRecordLinks bounds the links of one batch's span.
const maxRecordLinks = 128

// startBatchSpan starts the span of one attempt at applying recs. It
// continues the trace of the first record that carries one (so a batch of
// one event is a step of that event's trace) and links every distinct
// trace context the records carry.
func startBatchSpan(ctx context.Context, target string, recs []targetdb.Record) (context.Context, trace.Span) {
	var parent trace.SpanContext
	var links []trace.Link
	seen := map[trace.SpanID]bool{}
	for i := range recs {
		sc := tracing.FromRecord(recs[i].Msg.Headers)
		if !sc.IsValid() || seen[sc.SpanID()] {
			continue
		}
		seen[sc.SpanID()] = true
		if !parent.IsValid() {
			parent = sc
		}
		if len(links) < maxRecordLinks {
			links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{
				attribute.Int64("messaging.kafka.offset", recs[i].Msg.Offset)}})
		}
	}
	if parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	first, last := recs[0].Msg, recs[len(recs)-1].Msg
	return tracer.Start(ctx, "apply "+target, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("sluice.target", target), attribute.String("messaging.destination.name", first.Topic),
			attribute.Int("messaging.kafka.partition", first.Partition), attribute.Int64("sluice.first_offset", first.Offset),
			attribute.Int64("sluice.last_offset", last.Offset), attribute.Int("messaging.batch.message_count", len(recs))))
}

// endBatchSpan ends span with the attempt's outcome.
func endBatchSpan(span trace.Span, applied int, err error) {
	span.SetAttributes(attribute.Int("sluice.applied", applied))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "apply failed")
	}
	span.End()
}
