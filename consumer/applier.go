package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/schema"
)

// Applier applies the events topic to one target. Create it with New and
// run it with Run; its methods are safe for concurrent use.
type Applier struct {
	cfg  Config
	pool *pgxpool.Pool
	dlq  *kafka.Writer
	m    *metrics
	log  *slog.Logger

	breaker    *breaker
	partitions partitionSet
	ctrl       *controlView
	createdAt  time.Time // when the target was first migrated
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
	pool, err := newPool(cfg)
	if err != nil {
		return nil, err
	}
	a := &Applier{
		cfg:  cfg,
		pool: pool,
		dlq:  newDLQWriter(cfg),
		m:    newMetrics(cfg.Registerer, cfg.Target),
		log:  cfg.Logger.With("target", cfg.Target),
		ctrl: newControlView(),
	}
	registerPoolStats(cfg.Registerer, cfg.Target, func() (int32, int32, int32) {
		st := pool.Stat()
		return st.AcquiredConns(), st.IdleConns(), st.MaxConns()
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
	switch to {
	case BreakerOpen:
		a.log.Warn("breaker open: applying nothing to this target until a probe succeeds",
			"from", from.String(), "consecutive_failures", a.cfg.TripAfter)
		a.pool.Reset() // never blocks: idle sessions are closed in the background, and Close waits for them
	case BreakerHalfOpen:
		a.log.Info("breaker half-open: probing with one batch")
	case BreakerClosed:
		a.log.Info("breaker closed: target healthy again")
	}
}

// followControl tails the control topic for this target's desired state,
// closing read once it has read the topic to the end at start.
func (a *Applier) followControl(ctx context.Context, read chan<- struct{}) {
	announced := false
	announce := func() {
		if !announced {
			announced = true
			close(read)
		}
	}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := a.tailControl(ctx, announce)
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("reading the control topic failed; retrying", "topic", a.cfg.ControlTopic, "err", err)
		sleep(ctx, a.backoff(attempt))
	}
}

func (a *Applier) tailControl(ctx context.Context, caughtUp func()) error {
	c := NewControl(a.cfg.Brokers, a.cfg.ControlTopic)
	defer c.Close()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := c.client.ListOffsets(lctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{a.cfg.ControlTopic: {kafka.FirstOffsetOf(0), kafka.LastOffsetOf(0)}}})
	cancel()
	if err != nil {
		return err
	}
	parts := resp.Topics[a.cfg.ControlTopic]
	if len(parts) != 1 || parts[0].Error != nil {
		return fmt.Errorf("list offsets of %s: %v", a.cfg.ControlTopic, parts)
	}
	start, end := parts[0].FirstOffset, parts[0].LastOffset
	if end <= start {
		caughtUp()
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: a.cfg.Brokers, Topic: a.cfg.ControlTopic, Partition: 0,
		MaxWait: 200 * time.Millisecond, // how fast a replica obeys an operator
		Logger:  kafkaLogger(a.log, slog.LevelDebug), ErrorLogger: kafkaLogger(a.log, slog.LevelWarn),
	})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		return err
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return err
		}
		if string(m.Key) == a.cfg.Target && m.Value != nil {
			var s DesiredState
			if err := json.Unmarshal(m.Value, &s); err != nil {
				a.log.Error("unreadable desired state in the control topic; ignoring it", "offset", m.Offset, "err", err)
			} else {
				a.obey(s)
			}
		}
		if m.Offset >= end-1 {
			caughtUp()
		}
	}
}

// obey makes s the desired state every worker follows.
func (a *Applier) obey(s DesiredState) {
	prev, _ := a.ctrl.get()
	a.ctrl.set(s)
	if s.Paused {
		a.m.paused.Set(1)
	} else {
		a.m.paused.Set(0)
	}
	if s.Paused && !prev.Paused {
		a.log.Warn("paused by operator", "by", s.By)
		a.pool.Reset() // a paused applier holds no session
	}
	if !s.Paused && prev.Paused {
		a.log.Info("resumed by operator", "by", s.By)
	}
	if s.Rewind != nil && (prev.Rewind == nil || prev.Rewind.ID != s.Rewind.ID) {
		a.log.Warn("rewind requested by operator", "rewind", s.Rewind.ID, "by", s.By, "offsets", s.Rewind.Offsets)
	}
}

// BreakerState reports the target's breaker state.
func (a *Applier) BreakerState() BreakerState { return a.breaker.State() }

// Ping checks that the target database answers, for readiness probes.
func (a *Applier) Ping(ctx context.Context) error { return a.pool.Ping(ctx) }

// Run joins the consumer group and applies until ctx ends. Stopping waits,
// in this order, for: every partition worker to stop fetching and finish (or,
// past ApplyTimeout, abandon) its in-flight batch; the group to be left; the
// DLQ writer to flush; the pool to close. An abandoned batch was not
// committed, so it is replayed by whoever gets the partition next.
func (a *Applier) Run(ctx context.Context) error {
	defer a.pool.Close()
	defer a.dlq.Close()
	if err := a.waitForSchema(ctx); err != nil {
		return err
	}
	// The desired state comes first: a restarted replica must know it is
	// paused (or rewinding) before it fetches anything.
	controlRead := make(chan struct{})
	controlCtx, stopControl := context.WithCancel(context.WithoutCancel(ctx))
	controlDone := make(chan struct{})
	go func() { defer close(controlDone); a.followControl(controlCtx, controlRead) }()
	defer func() { stopControl(); <-controlDone }() // after the workers are gone
	select {
	case <-controlRead:
	case <-ctx.Done():
		return nil
	}
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                GroupID(a.cfg.Target),
		Brokers:           a.cfg.Brokers,
		Topics:            []string{a.cfg.Topic},
		StartOffset:       kafka.FirstOffset, // a new target backfills from the start of the log
		SessionTimeout:    a.cfg.SessionTimeout,
		RebalanceTimeout:  a.cfg.SessionTimeout,
		HeartbeatInterval: a.cfg.SessionTimeout / 10,
		JoinGroupBackoff:  time.Second,
		Logger:            kafkaLogger(a.log, slog.LevelDebug),
		ErrorLogger:       kafkaLogger(a.log, slog.LevelWarn),
	})
	if err != nil {
		return fmt.Errorf("join consumer group %s: %w", GroupID(a.cfg.Target), err)
	}
	defer group.Close() // runs first: waits for the partition workers

	monitorCtx, stopMonitor := context.WithCancel(context.WithoutCancel(ctx))
	monitorDone := make(chan struct{})
	go func() { defer close(monitorDone); a.monitorLag(monitorCtx) }()
	defer func() { stopMonitor(); <-monitorDone }() // runs before group.Close: the monitor only reads

	a.log.Info("applier started", "group", GroupID(a.cfg.Target), "topic", a.cfg.Topic)
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
		a.log.Info("partitions assigned", "generation", gen.ID, "partitions", ids)
		for _, p := range assigned {
			gen.Start(func(gctx context.Context) { a.runPartition(gctx, gen, p) })
		}
	}
}

// waitForSchema waits until the target answers, then refuses to go on
// unless it is at the configured schema version.
func (a *Applier) waitForSchema(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		qctx, cancel := context.WithTimeout(ctx, a.cfg.ApplyTimeout)
		v, err := schema.CurrentVersion(qctx, a.pool)
		if err == nil && v > 0 {
			err = a.pool.QueryRow(qctx, `SELECT min(applied_at) FROM sluice_schema_migrations`).Scan(&a.createdAt)
		}
		cancel()
		if err == nil {
			if v != a.cfg.SchemaVersion {
				return fmt.Errorf("%w: target %s is at version %d, configured %d: run `sluice migrate --target %s`",
					ErrSchemaVersion, a.cfg.Target, v, a.cfg.SchemaVersion, a.cfg.Target)
			}
			return nil
		}
		a.log.Warn("waiting for target database", "err", err, "attempt", attempt)
		if !sleep(ctx, a.backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// progress is how far applySpan got: the first done records are durable
// (applied or dead-lettered), in order.
type progress struct {
	done int
}

// applySpan applies recs in order. A retryable error returns at once; a
// permanent one is narrowed down by splitting the span in halves until the
// one record at fault is found, which goes to the DLQ, and the rest apply.
func (a *Applier) applySpan(ctx context.Context, recs []record, prog *progress) error {
	for i := range recs {
		if recs[i].decodeErr != nil { // no database needed to know this one is poison
			if err := a.applySpan(ctx, recs[:i], prog); err != nil {
				return err
			}
			if err := a.deadLetterOne(ctx, recs[i], recs[i].decodeErr, i == len(recs)-1); err != nil {
				return err
			}
			prog.done++
			return a.applySpan(ctx, recs[i+1:], prog)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	inserted, err := applyTx(ctx, a.pool, recs, cursorAfter(a.cfg.Topic, recs[len(recs)-1].msg))
	if err == nil {
		a.m.applied.Add(float64(inserted))
		a.m.duplicate.Add(float64(int64(len(recs)) - inserted))
		prog.done += len(recs)
		return nil
	}
	if Classify(err) == Retryable {
		return fmt.Errorf("apply %d records to %s at %d/%d: %w", len(recs), a.cfg.Target, recs[0].msg.Partition, recs[0].msg.Offset, err)
	}
	a.m.failed(Permanent)
	if len(recs) == 1 {
		if err := a.deadLetterOne(ctx, recs[0], err, true); err != nil {
			return err
		}
		prog.done++
		return nil
	}
	mid := len(recs) / 2
	if err := a.applySpan(ctx, recs[:mid], prog); err != nil {
		return err
	}
	return a.applySpan(ctx, recs[mid:], prog)
}

// deadLetterOne sends r to the DLQ and, when nothing after it in the batch
// will move the partition's offsets row, moves it past r.
func (a *Applier) deadLetterOne(ctx context.Context, r record, cause error, last bool) error {
	if err := a.deadLetter(ctx, r, cause); err != nil {
		return fmt.Errorf("dead-letter %d/%d: %w", r.msg.Partition, r.msg.Offset, err)
	}
	a.m.deadLettered.Inc()
	a.log.Warn("record dead-lettered", "partition", r.msg.Partition, "offset", r.msg.Offset,
		"dlq", a.cfg.DLQTopic, "err", cause)
	if last {
		return advanceOffset(ctx, a.pool, a.cfg.Topic, r.msg.Partition, r.msg.Offset+1)
	}
	return nil
}

// backoff is jittered exponential: uniformly within [d/2, d], d doubling from
// RetryMin up to RetryMax, so replicas retrying together drift apart.
func (a *Applier) backoff(attempt int) time.Duration {
	d := a.cfg.RetryMin << min(attempt, 30)
	if d <= 0 || d > a.cfg.RetryMax {
		d = a.cfg.RetryMax
	}
	return d/2 + rand.N(d/2+1)
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

func kafkaLogger(log *slog.Logger, level slog.Level) kafka.Logger {
	return kafka.LoggerFunc(func(msg string, args ...any) {
		log.Log(context.Background(), level, fmt.Sprintf(msg, args...), "component", "kafka-go")
	})
}
