package consumer

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/control"
	"github.com/sluicehq/sluice/internal/targetdb"
)

// projectionStats counts what the target's projections do, for metrics and
// the published status. Safe for concurrent use.
type projectionStats struct {
	rows     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	target   string

	mu   sync.Mutex
	last map[string]*control.ProjectionStatus
}

func newProjectionStats(reg prometheus.Registerer, target string) *projectionStats {
	s := &projectionStats{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_projection_rows_total",
			Help: "Rows a projection inserted, updated or deleted in the target's own tables.",
		}, []string{"target", "projection"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_projection_duration_seconds",
			Help:    "Time one projection's statement took in one batch's transaction.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"target", "projection"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_projection_errors_total",
			Help: "Failures of a projection, by class: permanent (one event's data: dead-lettered) or retryable (the projection or the database: the target stalls until it is fixed).",
		}, []string{"target", "projection", "class"}),
		target: target,
		last:   map[string]*control.ProjectionStatus{},
	}
	if reg != nil {
		reg.MustRegister(s.rows, s.duration, s.errors)
	}
	return s
}

// declare makes every series of the named projections exist from the start,
// at 0, so that rate() sees the first rows and dashboards show zero.
func (s *projectionStats) declare(names []string) {
	for _, n := range names {
		s.rows.WithLabelValues(s.target, n)
		s.duration.WithLabelValues(s.target, n)
		for _, c := range []targetdb.Class{targetdb.Retryable, targetdb.Permanent} {
			s.errors.WithLabelValues(s.target, n, c.String())
		}
	}
}

// observe records one projection's result in one transaction. A result
// counts once its transaction commits, which this cannot know: rows of a
// rolled-back batch are counted too, and the batch applied again later
// counts them once more. The ledger, not this counter, is what guarantees
// each event's effect once.
func (s *projectionStats) observe(r targetdb.ProjectionResult) {
	s.duration.WithLabelValues(s.target, r.Projection).Observe(r.Took.Seconds())
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.last[r.Projection]
	if st == nil {
		st = &control.ProjectionStatus{Name: r.Projection}
		s.last[r.Projection] = st
	}
	st.LastDuration = r.Took
	if r.Err != nil {
		class := targetdb.Classify(r.Err)
		s.errors.WithLabelValues(s.target, r.Projection, class.String()).Inc()
		st.LastError, st.LastErrorAt = r.Err.Error(), time.Now().UTC()
		return
	}
	s.rows.WithLabelValues(s.target, r.Projection).Add(float64(r.Rows))
	st.Rows += r.Rows
	st.LastError, st.LastErrorAt = "", time.Time{}
}

// snapshot is the status of every projection that ran, in names' order.
func (s *projectionStats) snapshot(names []string) []control.ProjectionStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]control.ProjectionStatus, 0, len(names))
	for _, n := range names {
		if st := s.last[n]; st != nil {
			out = append(out, *st)
		} else {
			out = append(out, control.ProjectionStatus{Name: n})
		}
	}
	return out
}
