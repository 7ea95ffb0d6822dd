package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
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
	lag  lagTracker
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
	}
	a.lag.gauge = a.m.lagSeconds
	return a, nil
}

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

// runPartition is one partition's worker for one generation. It must not
// return before the generation ends: with kafka-go, one returning worker
// ends the generation for all.
func (a *Applier) runPartition(gctx context.Context, gen *kafka.Generation, p kafka.PartitionAssignment) {
	ctx, cancel := context.WithCancel(gctx)
	defer cancel()
	log := a.log.With("partition", p.ID)
	defer a.lag.forget(p.ID)

	start, ok := a.startOffset(ctx, p, log)
	if !ok {
		return
	}
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers:       a.cfg.Brokers,
		Topic:         a.cfg.Topic,
		Partition:     p.ID,
		MinBytes:      1,
		MaxBytes:      8 << 20,
		MaxWait:       500 * time.Millisecond,
		QueueCapacity: a.cfg.BatchSize,
		Logger:        kafkaLogger(log, slog.LevelDebug),
		ErrorLogger:   kafkaLogger(log, slog.LevelWarn),
	})
	defer reader.Close()
	if err := reader.SetOffset(start); err != nil {
		log.Error("cannot seek partition", "offset", start, "err", err)
		<-ctx.Done()
		return
	}
	log.Info("partition worker started", "offset", start)
	for ctx.Err() == nil {
		batch := a.collect(ctx, reader, log)
		if len(batch) > 0 {
			a.applyWithRetry(ctx, gen, batch, log)
		}
	}
}

// startOffset is where the worker resumes: the target's own record of what it
// applied when there is one (it is written in the same transaction as the
// rows, so it is exact), else the group's committed offset (or the start of
// the log for a group that never committed).
func (a *Applier) startOffset(ctx context.Context, p kafka.PartitionAssignment, log *slog.Logger) (int64, bool) {
	for attempt := 0; ; attempt++ {
		qctx, cancel := context.WithTimeout(ctx, a.cfg.ApplyTimeout)
		next, found, err := loadOffset(qctx, a.pool, a.cfg.Topic, p.ID)
		cancel()
		if err == nil {
			if found {
				return next, true
			}
			return p.Offset, true
		}
		log.Warn("cannot read the applied offset; retrying", "err", err, "attempt", attempt)
		if !sleep(ctx, a.backoff(attempt)) {
			return 0, false
		}
	}
}

// collect waits for one record, then gathers more until the batch is full or
// Linger has passed. When ctx ends it returns what it has, to be applied.
func (a *Applier) collect(ctx context.Context, reader *kafka.Reader, log *slog.Logger) []kafka.Message {
	first, err := reader.FetchMessage(ctx)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("fetch failed", "err", err)
			sleep(ctx, a.cfg.RetryMin)
		}
		return nil
	}
	batch := make([]kafka.Message, 1, a.cfg.BatchSize)
	batch[0] = first
	lctx, cancel := context.WithTimeout(ctx, a.cfg.Linger)
	defer cancel()
	for len(batch) < a.cfg.BatchSize {
		m, err := reader.FetchMessage(lctx)
		if err != nil {
			break
		}
		batch = append(batch, m)
	}
	return batch
}

// applyWithRetry applies msgs, retrying retryable failures with backoff
// until it succeeds or the worker is told to stop. Nothing new is fetched
// meanwhile: a sick target turns into lag, held in Kafka.
func (a *Applier) applyWithRetry(ctx context.Context, gen *kafka.Generation, msgs []kafka.Message, log *slog.Logger) {
	recs := make([]record, len(msgs))
	for i, m := range msgs {
		recs[i] = decodeRecord(m)
	}
	for attempt := 0; ; attempt++ {
		// The transaction does not take ctx's cancellation: a batch under way
		// when we are told to stop is finished, within ApplyTimeout.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ApplyTimeout)
		began := a.cfg.now()
		var prog progress
		err := a.applySpan(actx, recs, &prog)
		cancel()
		a.m.batchDuration.Observe(a.cfg.now().Sub(began).Seconds())
		recs = recs[prog.done:] // what was committed is never redone
		if err == nil {
			last := msgs[len(msgs)-1]
			a.afterCommit(gen, last, log)
			return
		}
		first := recs[0].msg
		log.Warn("apply failed; batch kept for retry", "offset", first.Offset, "records", len(recs),
			"class", Classify(err).String(), "attempt", attempt, "err", err)
		if ctx.Err() != nil {
			log.Info("stopping with a batch not applied; it will be replayed", "offset", first.Offset)
			return
		}
		if !sleep(ctx, a.backoff(attempt)) {
			return
		}
	}
}

// afterCommit runs once a whole batch is durable in the target: it commits
// the group offset (for visibility; the target's own offsets row is what a
// worker resumes from) and updates the lag gauges.
func (a *Applier) afterCommit(gen *kafka.Generation, last kafka.Message, log *slog.Logger) {
	next := last.Offset + 1
	if err := gen.CommitOffsets(map[string]map[int]int64{a.cfg.Topic: {last.Partition: next}}); err != nil {
		log.Debug("group offset not committed (the target has it)", "offset", next, "err", err)
	}
	behind := max(last.HighWaterMark-next, 0)
	a.m.setLag(last.Partition, behind)
	var age time.Duration
	if behind > 0 {
		// The oldest unapplied record is younger than the last applied one,
		// so this is an upper bound that is exact once caught up.
		age = a.cfg.now().Sub(last.Time)
	}
	a.lag.set(last.Partition, age)
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
	inserted, err := applyTx(ctx, a.pool, a.cfg.Topic, recs)
	if err == nil {
		a.m.applied.Add(float64(inserted))
		a.m.duplicate.Add(float64(int64(len(recs)) - inserted))
		prog.done += len(recs)
		return nil
	}
	if Classify(err) == Retryable {
		return fmt.Errorf("apply %d records to %s at %d/%d: %w", len(recs), a.cfg.Target, recs[0].msg.Partition, recs[0].msg.Offset, err)
	}
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

// lagTracker keeps the age of the oldest unapplied record per partition of
// this replica and publishes the largest.
type lagTracker struct {
	mu    sync.Mutex
	ages  map[int]time.Duration
	gauge interface{ Set(float64) }
}

func (l *lagTracker) set(partition int, age time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ages == nil {
		l.ages = make(map[int]time.Duration)
	}
	l.ages[partition] = age
	l.publish()
}

func (l *lagTracker) forget(partition int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.ages, partition)
	l.publish()
}

func (l *lagTracker) publish() {
	var worst time.Duration
	for _, a := range l.ages {
		worst = max(worst, a)
	}
	l.gauge.Set(worst.Seconds())
}
