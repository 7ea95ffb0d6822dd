package producer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the ingest metrics. Safe for concurrent use.
//
// The metric names are a stable contract: dashboards and alerts in deploy/
// depend on them.
type Metrics struct {
	requests *prometheus.CounterVec
	events   *prometheus.CounterVec
	duration prometheus.Histogram
}

// NewMetrics registers the ingest metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_requests_total",
			Help: "Ingest requests answered, by HTTP status code and key name (\"none\" when no accepted key was sent).",
		}, []string{"code", "key"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_events_total",
			Help: "Events acknowledged by Kafka and answered with 202, by key name.",
		}, []string{"key"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_ingest_request_duration_seconds",
			Help:    "Time from request received to answer written.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	reg.MustRegister(m.requests, m.events, m.duration)
	return m
}
