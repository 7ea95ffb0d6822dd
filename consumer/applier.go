package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/control"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
	"github.com/sluicehq/sluice/schema"
)

// Applier applies the events topic to one target. Create it with New and
// run it with Run; its methods are safe for concurrent use.
type Applier struct {
	cfg     Config
	cluster *kafkaadmin.Cluster
	plane   *control.Plane
	pool    *pgxpool.Pool
	dlq     *kafka.Writer
	// projections are run in each batch's transaction.
	projections *targetdb.Projections
	projStats   *projectionStats
	m           *metrics
	log         *slog.Logger

	breaker    *breaker
	partitions partitionSet
	ctrl       *controlView
	report     *reporter
	limit      *batchLimit
	blockers   *blockerWatch // nil when the policy is off
	createdAt  time.Time     // when the target was first migrated
	joined     atomic.Bool   // a generation has assigned this replica its partitions
	retired    chan struct{}
	retireOnce sync.Once
}

// New validates cfg, fills its defaults and returns an Applier. It opens no
// connection yet: a target that is down at start is waited for by Run.
func New(cfg Config) (*Applier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if cfg.SchemaVersion == 0 {
		cfg.SchemaVersion = schema.LatestVersion()
	}
	pool, err := targetdb.NewPool(cfg.DSN, cfg.session(), cfg.MaxConns)
	if err != nil {
		return nil, fmt.Errorf("%w: target %s: %v", ErrInvalidConfig, cfg.Target, err)
	}
	a := &Applier{
		cfg:     cfg,
		cluster: cfg.Cluster,
		plane:   control.New(cfg.Cluster),
		pool:    pool,
		dlq:     newDLQWriter(cfg),
		m:       newMetrics(cfg.Registerer, cfg.Target),
		log:     cfg.Logger.With("target", cfg.Target),
		ctrl:    newControlView(),
		retired: make(chan struct{}),
	}
	registerPoolStats(cfg.Registerer, cfg.Target, func() (int32, int32, int32) {
		st := pool.Stat()
		return st.AcquiredConns(), st.IdleConns(), st.MaxConns()
	})
	a.projStats = newProjectionStats(cfg.Registerer, cfg.Target)
	if a.projections, err = targetdb.CompileProjections(cfg.Projections, a.projStats.observe); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%w: target %s: %v", ErrInvalidConfig, cfg.Target, err)
	}
	a.projStats.declare(a.projections.Names())
	a.report = newReporter(a)
	if cfg.Blockers.After > 0 {
		a.blockers = newBlockerWatch(a, cfg.Blockers)
	}
	a.limit = newBatchLimit(cfg.BatchSize, cfg.StatementTimeout/4, func(n int) {
		a.m.batchLimit.Set(float64(n))
		a.report.changed()
	})
	a.breaker = newBreaker(breakerConfig{
		name: cfg.Target, tripAfter: cfg.TripAfter,
		minOpen: cfg.BreakerMinOpen, maxOpen: cfg.BreakerMaxOpen, now: cfg.now,
		onChange: a.breakerChanged,
	})
	return a, nil
}

// breakerChanged publishes the state, and on opening closes every idle
// session: an open breaker holds nothing on its database.
func (a *Applier) breakerChanged(from, to BreakerState) {
	a.m.breakerState.Set(float64(to))
	a.report.changed()
	switch to {
	case BreakerOpen:
		a.m.breakerOpenings.Inc()
		a.log.Warn("breaker open: applying nothing to this target until a probe succeeds",
			"from", from.String(), "consecutive_failures", a.cfg.TripAfter)
		targetdb.CloseIdle(a.pool) // never blocks: idle sessions end in the background, and Close waits for them
	case BreakerHalfOpen:
		a.log.Info("breaker half-open: probing with one batch")
	case BreakerClosed:
		a.log.Info("breaker closed: target healthy again")
	}
}

// Ping checks that the target database answers, for readiness probes.
func (a *Applier) Ping(ctx context.Context) error { return a.pool.Ping(ctx) }

// Run joins the consumer group and applies until ctx ends.
//
// Stopping happens in this order, each step waiting for the one before:
//  1. the group's partition workers stop fetching and finish (or, past
//     ApplyTimeout, abandon) their in-flight batch — an abandoned batch was
//     not committed, so whoever gets the partition next replays it;
//  2. the group is left (group.Close waits for the workers);
//  3. the lag monitor, the status reporter (which writes the replica's
//     tombstone), the control follower and the blocker watch stop;
//  4. the DLQ writer flushes, the control plane's writers close, the pool
//     closes.
//
// When an operator retires the target, Run stops the same way and returns
// ErrRetired.
func (a *Applier) Run(ctx context.Context) error {
	// A retired target stops as if told to, and says so.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-a.retired:
			a.log.Warn("target retired by an operator: stopping; remove it from the configuration")
			stop()
		case <-ctx.Done():
		}
	}()
	err := a.run(ctx)
	select {
	case <-a.retired:
		return ErrRetired
	default:
		return err
	}
}

func (a *Applier) run(ctx context.Context) error {
	background := newRunGroup(context.WithoutCancel(ctx))
	defer func() {
		background.stop() // step 3
		_ = a.dlq.Close() // step 4
		_ = a.plane.Close()
		a.pool.Close()
	}()
	background.run(a.report.run)
	background.run(a.monitorLag)
	if err := a.waitForSchema(ctx); err != nil {
		return err
	}
	// The desired state comes first: a restarted replica must know it is
	// paused (or rewinding) before it fetches anything.
	controlRead := make(chan struct{})
	background.run(func(ctx context.Context) { a.followControl(ctx, controlRead) })
	select {
	case <-controlRead:
	case <-ctx.Done():
		return nil
	}
	background.run(a.blockers.run)
	group, err := a.cluster.NewConsumerGroup(kafkaadmin.GroupConfig{
		ID: kafkaadmin.GroupID(a.cfg.Target), Topics: []string{a.cfg.Topic},
		SessionTimeout: a.cfg.SessionTimeout, Logger: a.log,
	})
	if err != nil {
		return fmt.Errorf("join consumer group %s: %w", kafkaadmin.GroupID(a.cfg.Target), err)
	}
	defer group.Close() // steps 1 and 2: runs before the deferred stop above

	a.log.Info("applier started", "group", kafkaadmin.GroupID(a.cfg.Target), "topic", a.cfg.Topic, "replica", a.cfg.Replica)
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				a.log.Info("applier stopping")
				return nil
			}
			a.log.Warn("consumer group error; rejoining", "err", err)
			continue
		}
		assigned := gen.Assignments[a.cfg.Topic]
		ids := make([]int, len(assigned))
		for i, p := range assigned {
			ids[i] = p.ID
		}
		a.joined.Store(true)
		a.log.Info("partitions assigned", "generation", gen.ID, "partitions", ids)
		commits := newGroupCommits(gen, a.log)
		gen.Start(commits.run)
		for _, p := range assigned {
			gen.Start(func(gctx context.Context) { a.runPartition(gctx, commits, p.ID, p.Offset) })
		}
	}
}

// runGroup owns the applier's background goroutines: each runs until stop,
// which cancels them all and waits for every one.
type runGroup struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   []chan struct{}
}

func newRunGroup(parent context.Context) *runGroup {
	ctx, cancel := context.WithCancel(parent)
	return &runGroup{ctx: ctx, cancel: cancel}
}

func (g *runGroup) run(fn func(context.Context)) {
	done := make(chan struct{})
	g.done = append(g.done, done)
	go func() { defer close(done); fn(g.ctx) }()
}

func (g *runGroup) stop() {
	g.cancel()
	for _, d := range g.done {
		<-d
	}
}

// waitForSchema waits until the target answers, then refuses to go on
// unless it is at the configured schema version. Asking goes through the
// breaker like any other use of the target, so a target that is down at
// start shows an open breaker, not a closed one.
func (a *Applier) waitForSchema(ctx context.Context) error {
	for attempt := 0; ; {
		if !a.breaker.wait(ctx, nil) {
			return ctx.Err()
		}
		var v int
		err := a.breaker.do(func() error {
			qctx, cancel := context.WithTimeout(ctx, a.cfg.ApplyTimeout)
			defer cancel()
			var err error
			if v, err = schema.CurrentVersion(qctx, a.pool); err == nil && v > 0 {
				a.createdAt, err = schema.FirstMigratedAt(qctx, a.pool)
			}
			return err
		})
		if errors.Is(err, errBreakerBusy) {
			a.breaker.waitForChange(ctx, time.Second)
			continue
		}
		if err == nil {
			if v != a.cfg.SchemaVersion {
				return fmt.Errorf("%w: target %s is at version %d, configured %d: run `sluice migrate --target %s`",
					ErrSchemaVersion, a.cfg.Target, v, a.cfg.SchemaVersion, a.cfg.Target)
			}
			a.report.succeeded()
			return nil
		}
		a.report.failed(err)
		a.log.Warn("waiting for target database", "err", err, "attempt", attempt)
		if !sleep(ctx, a.backoff(attempt)) {
			return ctx.Err()
		}
		attempt++
	}
}

// backoff is jittered exponential: uniformly within [d/2, d], d doubling from
// RetryMin up to RetryMax, so replicas retrying together drift apart.
func (a *Applier) backoff(attempt int) time.Duration {
	return retryPolicy{a.cfg.RetryMin, a.cfg.RetryMax}.backoff(attempt)
}

// sleep waits d or until ctx ends, reporting whether it waited in full.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
