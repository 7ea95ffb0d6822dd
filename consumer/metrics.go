package consumer

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/targetdb"
)

// metrics are the applier's metrics, labelled with one target. Their names
// are a stable contract: the dashboards and alerts in deploy/ depend on them.
type metrics struct {
	applied, duplicate, deadLettered prometheus.Counter
	batchDuration                    prometheus.Observer
	failures                         *prometheus.CounterVec
	breakerState                     prometheus.Gauge
	breakerOpenings                  prometheus.Counter
	paused                           prometheus.Gauge
	lagMessages                      *prometheus.GaugeVec
	lagSeconds                       prometheus.Gauge
	retention                        prometheus.Gauge
	batchLimit                       prometheus.Gauge
	aheadOfLog                       prometheus.Gauge
	blockers                         *prometheus.CounterVec // by action, curried with the target
	target                           string
}

func newMetrics(reg prometheus.Registerer, target string) *metrics {
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_apply_events_total",
		Help: "Events dealt with by the applier, by result: applied (new row), duplicate (already there), dead_lettered.",
	}, []string{"target", "result"})
	batch := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sluice_apply_batch_duration_seconds",
		Help:    "Time to apply one batch, transaction and commit included, successful or not.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"target"})
	breaker := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_breaker_state",
		Help: "Circuit breaker of the target: 0 closed, 1 half-open, 2 open.",
	}, []string{"target"})
	openings := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_breaker_openings_total",
		Help: "Times the target's circuit breaker opened. An opening can last under a second, too short for a scrape of sluice_breaker_state to see.",
	}, []string{"target"})
	paused := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_target_paused",
		Help: "1 while an operator has paused the target's applier.",
	}, []string{"target"})
	lagMsgs := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_consumer_lag_messages",
		Help: "Records in the partition not yet applied to the target: log-end offset minus next offset to apply.",
	}, []string{"target", "partition"})
	lagSecs := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_consumer_lag_seconds",
		Help: "Age of the oldest record not yet applied to the target (0 when caught up).",
	}, []string{"target"})
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_apply_failures_total",
		Help: "Failed attempts at applying a batch, by class: retryable (the batch is retried) or permanent (an event goes to the DLQ).",
	}, []string{"target", "class"})
	retention := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_events_retention_seconds",
		Help: "Retention of the events topic as the broker reports it: how long the target may lag before it loses events (-1: unlimited).",
	}, []string{"target"})
	batchLimit := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_apply_batch_limit",
		Help: "Most records one transaction of the target carries now: BatchSize, halved after each batch too slow for the database, doubled back after quick ones.",
	}, []string{"target"})
	ahead := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_target_ahead_of_log",
		Help: "Partitions whose recorded position lies beyond the events topic's end (the topic was recreated or truncated): they apply nothing until an operator rewinds them.",
	}, []string{"target"})
	blockers := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_blocking_sessions_total",
		Help: "Sessions that stalled the target, by what the blocker policy did: ended, reported (report mode), spared (a guard rail kept it), not permitted.",
	}, []string{"target", "action"})
	if reg != nil {
		reg.MustRegister(events, batch, breaker, openings, paused, lagMsgs, lagSecs, failures, retention, batchLimit, ahead, blockers)
	}
	// Every series exists from the start, at 0, so that rate() and
	// increase() see the first event, and dashboards show zero, not "no data".
	for _, c := range []targetdb.Class{targetdb.Retryable, targetdb.Permanent} {
		failures.WithLabelValues(target, c.String())
	}
	return &metrics{
		applied:         events.WithLabelValues(target, "applied"),
		duplicate:       events.WithLabelValues(target, "duplicate"),
		deadLettered:    events.WithLabelValues(target, "dead_lettered"),
		batchDuration:   batch.WithLabelValues(target),
		failures:        failures,
		breakerState:    breaker.WithLabelValues(target),
		breakerOpenings: openings.WithLabelValues(target),
		paused:          paused.WithLabelValues(target),
		lagMessages:     lagMsgs,
		lagSeconds:      lagSecs.WithLabelValues(target),
		retention:       retention.WithLabelValues(target),
		batchLimit:      batchLimit.WithLabelValues(target),
		aheadOfLog:      ahead.WithLabelValues(target),
		blockers:        blockers.MustCurryWith(prometheus.Labels{"target": target}),
		target:          target,
	}
}

func (m *metrics) setLag(partition int, messages int64) {
	m.lagMessages.WithLabelValues(m.target, strconv.Itoa(partition)).Set(float64(messages))
}

func (m *metrics) forgetLag(partition int) {
	m.lagMessages.DeleteLabelValues(m.target, strconv.Itoa(partition))
}

func (m *metrics) failed(class targetdb.Class) {
	m.failures.WithLabelValues(m.target, class.String()).Inc()
}

// registerPoolStats exports the target's database sessions as the pool
// sees them: acquired (in use), idle, and the pool's bound.
func registerPoolStats(reg prometheus.Registerer, target string, stat func() (acquired, idle, max int32)) {
	if reg == nil {
		return
	}
	for _, state := range []string{"acquired", "idle", "max"} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "sluice_db_sessions",
			Help:        "Database sessions of the applier on its target: acquired (in a query or transaction), idle, and max (the pool's bound).",
			ConstLabels: prometheus.Labels{"target": target, "state": state},
		}, func() float64 {
			a, i, m := stat()
			return float64(map[string]int32{"acquired": a, "idle": i, "max": m}[state])
		}))
	}
}
