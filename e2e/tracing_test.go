package e2e

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// span is one exported span as the collector stand-in received it.
type span struct {
	service, name     string
	traceID, spanID   string
	parentID          string
	linkTraces, links []string // trace ids and span ids of its links
}

// otlpReceiver is a collector stand-in: it takes OTLP/HTTP protobuf
// exports, the exporters' real output, and keeps every span.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/traces" {
			http.NotFound(w, req)
			return
		}
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			body = gz
		}
		raw, _ := io.ReadAll(body)
		var export collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(raw, &export); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		r.mu.Lock()
		for _, rs := range export.ResourceSpans {
			service := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					r.spans = append(r.spans, toSpan(service, s))
				}
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.Close)
	return r
}

func toSpan(service string, s *tracepb.Span) span {
	sp := span{service: service, name: s.Name, traceID: hex.EncodeToString(s.TraceId), spanID: hex.EncodeToString(s.SpanId),
		parentID: hex.EncodeToString(s.ParentSpanId)}
	for _, l := range s.Links {
		sp.linkTraces = append(sp.linkTraces, hex.EncodeToString(l.TraceId))
		sp.links = append(sp.links, hex.EncodeToString(l.SpanId))
	}
	return sp
}

func (r *otlpReceiver) find(match func(span) bool) (span, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.spans {
		if match(s) {
			return s, true
		}
	}
	return span{}, false
}

// TestOneEventsTraceFromRequestToApply: a publisher's traceparent is
// continued by ingest's server span, its produce span, and the applier's
// span for the batch that applied the event (parented on the produce span,
// and linking it); an event's own CloudEvents traceparent becomes a link
// of the produce span. Spans are what the OTLP exporter really sent.
func TestOneEventsTraceFromRequestToApply(t *testing.T) {
	parallel(t)
	rcv := newOTLPReceiver(t)
	p := newPipeline(t, pipelineOptions{partitions: 1, extraTop: fmt.Sprintf("tracing: {endpoint: %q}", rcv.URL)})
	p.startIngest()
	p.startApply("a")

	const traceID, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	const eventTrace = "0af7651916cd43dd8448eb211c80319c"
	body := fmt.Sprintf(`{"specversion":"1.0","id":"traced-1","source":"tracing/%s","type":"t","traceparent":"00-%s-b7ad6b7169203331-01"}`, p.id, eventTrace)
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.ingestAt+"/v1/events", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("Authorization", "Bearer "+p.key)
	req.Header.Set("traceparent", "00-"+traceID+"-"+callerSpan+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
	p.waitCount("a", "tracing/"+p.id, 1, 30*time.Second)

	var server, produce, apply span
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && apply.name == "" {
		time.Sleep(250 * time.Millisecond)
		server, _ = rcv.find(func(s span) bool {
			return s.service == "sluice-ingest" && s.name == "POST /v1/events" && s.traceID == traceID
		})
		produce, _ = rcv.find(func(s span) bool { return s.service == "sluice-ingest" && s.name == "produce" && s.traceID == traceID })
		apply, _ = rcv.find(func(s span) bool {
			return s.service == "sluice-apply-"+p.targets["a"] && s.traceID == traceID && s.parentID == produce.spanID && produce.spanID != ""
		})
	}
	if server.parentID != callerSpan {
		t.Fatalf("ingest's server span %+v does not continue the caller's span %s", server, callerSpan)
	}
	if produce.parentID != server.spanID {
		t.Fatalf("the produce span %+v is not a child of the server span %s", produce, server.spanID)
	}
	if len(produce.linkTraces) != 1 || produce.linkTraces[0] != eventTrace {
		t.Fatalf("the produce span links %v, want the event's own trace %s", produce.linkTraces, eventTrace)
	}
	if apply.name == "" {
		rcv.mu.Lock()
		t.Fatalf("no apply span in trace %s under the produce span; spans: %+v", traceID, rcv.spans)
	}
	if len(apply.links) != 1 || apply.links[0] != produce.spanID {
		t.Fatalf("the apply span links %v, want the produce span %s", apply.links, produce.spanID)
	}
	t.Logf("trace %s: caller %s → ingest %s → produce %s → apply %s (%s)", traceID, callerSpan, server.spanID, produce.spanID, apply.spanID, apply.name)
}
