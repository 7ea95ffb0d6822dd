package consumer

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/control"
	"github.com/sluicehq/sluice/internal/deadletter"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
)

// workerDeps is everything a partition worker uses, each part behind the
// smallest interface that an in-memory fake can stand in for: the worker
// holds no pointer back to the Applier, so its transitions can be tested
// without Kafka or PostgreSQL (see worker_fakes_test.go). The Applier wires
// the real ones (workerDeps).
type workerDeps struct {
	topic    string
	target   string
	dlqTopic string
	cfg      workerConfig

	events    eventLog       // the partition's log: fetchers, bounds, fingerprints
	positions positionsStore // the target's offsets rows and ledger
	dlq       deadLetterSink
	breaker   gate
	now       func() time.Time
	desired   desiredView
	limit     *batchLimit
	// partitions is where the worker publishes its partitionState, for the
	// lag monitor and the status.
	partitions *partitionSet
	// createdAt is when the target was first migrated: a command issued
	// before it is not for this target.
	createdAt time.Time

	m      *metrics
	status statusHooks
	stalls stallHooks
	log    *slog.Logger
}

// workerConfig is the part of Config a worker reads; see Config for each.
type workerConfig struct {
	BatchSize                                       int
	Linger, StallTimeout, ApplyTimeout, LagInterval time.Duration
	retry                                           retryPolicy
}

// retryPolicy is jittered exponential backoff: uniformly within [d/2, d],
// d doubling from min up to max, so replicas retrying together drift apart.
type retryPolicy struct{ min, max time.Duration }

func (p retryPolicy) backoff(attempt int) time.Duration {
	d := p.min << min(attempt, 30)
	if d <= 0 || d > p.max {
		d = p.max
	}
	return d/2 + rand.N(d/2+1)
}

// fetcher reads one partition from a position: a *kafka.Reader. Not safe
// for concurrent use; a worker owns its fetcher.
type fetcher interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	SetOffset(offset int64) error
	Close() error
}

// eventLog is the events topic as a worker sees it.
type eventLog interface {
	// newFetcher makes a fetcher of partition, not yet positioned.
	newFetcher(partition int, log *slog.Logger) fetcher
	// bounds are the first and next offsets of every partition.
	bounds(ctx context.Context) (starts, ends map[int]int64, err error)
	// recordTime is the timestamp of the record at offset: the log's
	// fingerprint there.
	recordTime(ctx context.Context, partition int, offset int64) (time.Time, error)
}

// positionsStore is the target's record of what it applied: the offsets
// row of each partition, written in the transaction of every batch.
type positionsStore interface {
	// load reads a partition's offsets row.
	load(ctx context.Context, partition int) (targetdb.Offset, error)
	// apply writes recs (all decodable) and moves cur in one transaction,
	// returning how many were new; expectNew is the partition's hint that
	// they all are (see targetStore.apply), updated as it learns.
	apply(ctx context.Context, recs []targetdb.Record, cur targetdb.Cursor, expectNew *bool) (int64, error)
	// recordMove moves a partition for an operator's command, once per id
	// (see targetdb.RecordMove).
	recordMove(ctx context.Context, partition int, offset int64, id string, forward bool) (next int64, moved bool, err error)
	// advance moves the offsets row past records dealt with elsewhere
	// (dead-lettered), a compare-and-set like apply.
	advance(ctx context.Context, cur targetdb.Cursor) error
}

// deadLetterSink keeps the records this target can never apply. It returns
// only once the record is safe: a record is never skipped before.
type deadLetterSink interface {
	deadLetter(ctx context.Context, r targetdb.Record, cause error) error
}

// gate is the target's breaker as a worker uses it.
type gate interface {
	wait(ctx context.Context, beforeWaiting func()) bool
	do(fn func() error) error
	waitForChange(ctx context.Context, d time.Duration)
	State() BreakerState
}

// desiredView is what operators ask of the target, with a channel closed
// when that changes: a *controlView.
type desiredView interface {
	get() (control.DesiredState, <-chan struct{})
}

// statusHooks feed the replica's published status: a *reporter.
type statusHooks interface {
	changed()
	succeeded()
	failed(err error)
}

// stallHooks feed the blocker policy's stall clock: a *blockerWatch (nil
// when the policy is off; its methods are nil-safe).
type stallHooks interface {
	applied()
	failed(err error, began time.Time)
}

// workerDeps wires the real parts: Kafka through the cluster, the target
// through the pool.
func (a *Applier) workerDeps() *workerDeps {
	return &workerDeps{
		topic: a.cfg.Topic, target: a.cfg.Target, dlqTopic: a.cfg.DLQTopic,
		cfg: workerConfig{
			BatchSize: a.cfg.BatchSize, Linger: a.cfg.Linger, StallTimeout: a.cfg.StallTimeout,
			ApplyTimeout: a.cfg.ApplyTimeout, LagInterval: a.cfg.LagInterval,
			retry: retryPolicy{a.cfg.RetryMin, a.cfg.RetryMax},
		},
		events:     kafkaLog{cluster: a.cluster, topic: a.cfg.Topic, queue: a.cfg.BatchSize},
		positions:  targetStore{pool: a.pool, topic: a.cfg.Topic, projections: a.projections},
		dlq:        kafkaDLQ{w: a.dlq, target: a.cfg.Target, now: a.cfg.now},
		breaker:    a.breaker,
		now:        a.cfg.now,
		desired:    a.ctrl,
		limit:      a.limit,
		partitions: &a.partitions,
		createdAt:  a.createdAt,
		m:          a.m,
		status:     a.report,
		stalls:     a.blockers,
		log:        a.log,
	}
}

// kafkaLog is the events topic in Kafka.
type kafkaLog struct {
	cluster *kafkaadmin.Cluster
	topic   string
	queue   int // records a reader prefetches
}

func (l kafkaLog) newFetcher(partition int, log *slog.Logger) fetcher {
	return l.cluster.NewReader(kafkaadmin.ReaderConfig{
		Topic: l.topic, Partition: partition, MaxBytes: 8 << 20, QueueCapacity: l.queue, Logger: log,
	})
}

func (l kafkaLog) bounds(ctx context.Context) (map[int]int64, map[int]int64, error) {
	return l.cluster.LogBounds(ctx, l.topic)
}

func (l kafkaLog) recordTime(ctx context.Context, partition int, offset int64) (time.Time, error) {
	return l.cluster.RecordTime(ctx, l.topic, partition, offset)
}

// targetStore is the target database.
type targetStore struct {
	pool        *pgxpool.Pool
	topic       string
	projections *targetdb.Projections
}

func (s targetStore) load(ctx context.Context, partition int) (targetdb.Offset, error) {
	return targetdb.LoadOffset(ctx, s.pool, s.topic, partition)
}

func (s targetStore) recordMove(ctx context.Context, partition int, offset int64, id string, forward bool) (int64, bool, error) {
	return targetdb.RecordMove(ctx, s.pool, s.topic, partition, offset, id, forward)
}

func (s targetStore) advance(ctx context.Context, cur targetdb.Cursor) error {
	return targetdb.Advance(ctx, s.pool, cur)
}

// kafkaDLQ is the target's dead-letter topic.
type kafkaDLQ struct {
	w      *kafka.Writer
	target string
	now    func() time.Time
}

// deadLetter appends the record, untouched, to the target's DLQ with headers
// naming the error, the target and where it came from. It returns only once
// Kafka has it: a record is never skipped before it is safe elsewhere.
func (q kafkaDLQ) deadLetter(ctx context.Context, r targetdb.Record, cause error) error {
	m := deadletter.Wrap(r.Msg, cause, targetdb.Classify(cause).String(), q.target, q.now())
	m = deadletter.Fit(m, kafkaadmin.DLQMaxRecordBytes)
	return q.w.WriteMessages(ctx, m)
}
