package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// observation is what the observer saw during a fault, sampled every 200ms.
type observation struct {
	MaxLagA              float64 `json:"max_lag_seconds_a"`
	MaxLagB              float64 `json:"max_lag_seconds_b"`
	BreakerOpenedB       bool    `json:"breaker_opened_b"`
	MaxSessionsB         int     `json:"max_sluice_sessions_b"`
	IdlePastTimeoutB     int     `json:"idle_in_transaction_past_timeout_b"`
	RetryableFailuresB   float64 `json:"retryable_failures_b"`
	SamplesWithBDatabase int     `json:"samples_with_b_database"`
	// ExcessSessionsB describes sluice's sessions on B at the first sample
	// that saw more of them than the pool allows: which backends they were.
	ExcessSessionsB []string `json:"excess_sessions_b,omitempty"`
}

// observer samples both appliers' metrics and B's pg_stat_activity until
// stopped. It tolerates B being down (that is what some faults do).
type observer struct {
	p      *pipeline
	a, b   *applier
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	obs    observation
	// idleTimeout is the applier's idle_in_transaction_session_timeout.
	idleTimeout time.Duration
	// poolBound is the applier's pool size: more sessions than this are
	// described in ExcessSessionsB.
	poolBound int
	// idleExcusedUntil: sessions idle in transaction past the timeout are
	// not counted before it (see excuseIdle).
	idleExcusedUntil time.Time
}

// excuseIdle stops counting sessions idle in transaction past their timeout
// for d. A thawed server has not yet run the timeouts that fell due while it
// was frozen: for a moment its sessions show idle for as long as it was
// frozen, and that is no fault of the applier's.
func (o *observer) excuseIdle(d time.Duration) {
	o.mu.Lock()
	o.idleExcusedUntil = time.Now().Add(d)
	o.mu.Unlock()
}

func (p *pipeline) observe(a, b *applier) *observer {
	ctx, cancel := context.WithCancel(context.Background())
	o := &observer{p: p, a: a, b: b, cancel: cancel, done: make(chan struct{}), idleTimeout: 5 * time.Second, poolBound: 2}
	go o.run(ctx)
	p.t.Cleanup(o.stop)
	return o
}

// admin is a connection to B's cluster (not the test database) for
// pg_stat_activity; reconnects after B comes back.
func (o *observer) run(ctx context.Context) {
	defer close(o.done)
	var admin *pgx.Conn
	defer func() {
		if admin != nil {
			admin.Close(context.Background())
		}
	}()
	appB := "sluice-apply-" + o.p.targets["b"]
	dbB := "sluice_test_" + o.p.id
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lagA := scrapeOr(o.a, fmt.Sprintf(`sluice_consumer_lag_seconds{target=%q}`, o.p.targets["a"]))
		lagB := scrapeOr(o.b, fmt.Sprintf(`sluice_consumer_lag_seconds{target=%q}`, o.p.targets["b"]))
		breaker := scrapeOr(o.b, fmt.Sprintf(`sluice_breaker_state{target=%q}`, o.p.targets["b"]))
		openings := scrapeOr(o.b, fmt.Sprintf(`sluice_breaker_openings_total{target=%q}`, o.p.targets["b"]))
		failures := scrapeOr(o.b, fmt.Sprintf(`sluice_apply_failures_total{class="retryable",target=%q}`, o.p.targets["b"]))

		sessions, idle := -1, 0
		var described []string
		if admin == nil {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			admin, _ = pgx.Connect(cctx, o.p.svc.pgB)
			cancel()
		}
		if admin != nil {
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			rows, err := admin.Query(qctx, `SELECT format('pid %s %s since %s backend_start %s wait %s/%s xact %s: %s',
					pid, state, state_change, backend_start, wait_event_type, wait_event, xact_start, left(query, 80)),
				state = 'idle in transaction' AND now() - state_change > make_interval(secs => $3)
				FROM pg_stat_activity WHERE application_name = $1 AND datname = $2`,
				appB, dbB, o.idleTimeout.Seconds())
			if err == nil {
				sessions = 0
				for rows.Next() {
					var what string
					var idlePast bool
					if err = rows.Scan(&what, &idlePast); err != nil {
						break
					}
					sessions++
					described = append(described, what)
					if idlePast {
						idle++
					}
				}
				rows.Close()
				if err == nil {
					err = rows.Err()
				}
			}
			cancel()
			if err != nil {
				admin.Close(context.Background())
				admin, sessions, idle = nil, -1, 0
			}
		}
		o.mu.Lock()
		o.obs.MaxLagA = max(o.obs.MaxLagA, lagA)
		o.obs.MaxLagB = max(o.obs.MaxLagB, lagB)
		o.obs.BreakerOpenedB = o.obs.BreakerOpenedB || breaker == 2 || openings > 0
		o.obs.RetryableFailuresB = max(o.obs.RetryableFailuresB, failures)
		if sessions >= 0 {
			o.obs.SamplesWithBDatabase++
			o.obs.MaxSessionsB = max(o.obs.MaxSessionsB, sessions)
			if sessions > o.poolBound && o.obs.ExcessSessionsB == nil { // poolBound is read under o.mu
				o.obs.ExcessSessionsB = described
			}
			if time.Now().After(o.idleExcusedUntil) {
				o.obs.IdlePastTimeoutB += idle
			}
		}
		o.mu.Unlock()
	}
}

// setPoolBound sets how many sessions on B sluice may hold: the sum of its
// B replicas' pools.
func (o *observer) setPoolBound(n int) {
	o.mu.Lock()
	o.poolBound = n
	o.mu.Unlock()
}

func (o *observer) stop() {
	o.cancel()
	<-o.done
}

func (o *observer) snapshot() observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.obs
}

// scrapeOr reads a metric, or -1 when the process does not answer.
func scrapeOr(ap *applier, series string) float64 {
	if ap == nil || !ap.running() {
		return -1
	}
	v, err := scrape(ap.addr, series)
	if err != nil {
		return -1
	}
	return v
}

// waitMetricBelow waits until a metric of ap is below limit and returns how
// long that took.
func waitMetricBelow(t *testing.T, ap *applier, series string, limit float64, timeout time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	for time.Since(began) < timeout {
		if v, err := scrape(ap.addr, series); err == nil && v < limit {
			return time.Since(began)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s stayed at or above %v for %v", series, limit, timeout)
	return 0
}
