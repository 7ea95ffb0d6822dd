package consumer

import (
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
	"github.com/sluicehq/sluice/schema"
)

// Config configures one Applier. The zero value of every field but Target,
// Brokers and DSN works; New fills the defaults and validates once.
type Config struct {
	// Target names the target; the consumer group is sluice-apply-<Target>.
	// Lower-case letters, digits, '-' and '_'. Required.
	Target string
	// Cluster reaches Kafka; the applier builds every Kafka client from it.
	// Required.
	Cluster *kafkaadmin.Cluster
	// Topic is the events topic. Default "sluice.events".
	Topic string
	// DLQTopic receives records this target can never apply.
	// Default "sluice.dlq.<Target>".
	DLQTopic string
	// Replica names this replica in sluice.status. Default host name and
	// process id.
	Replica string
	// DSN is the target's PostgreSQL connection string. Required.
	DSN string
	// SchemaVersion is the version the target must be migrated to; Run
	// refuses to apply to a database at another version. Default: the
	// latest this build knows.
	SchemaVersion int

	// Projections apply the events to the target's own tables, in the
	// transaction of each batch. None by default: the target gets the
	// ledger alone.
	Projections []targetdb.Projection

	// MaxConns bounds the target's pool. One worker per partition shares
	// it, so a locked database can hold at most MaxConns sessions of ours.
	// Default 2.
	MaxConns int32
	// BatchSize is the most records applied in one transaction. Default 500.
	BatchSize int
	// Linger is how long a partial batch waits for more records. Default 20ms.
	Linger time.Duration

	// LockTimeout is the session's lock_timeout: no statement of ours waits
	// longer than this for someone else's lock. Default 2s.
	LockTimeout time.Duration
	// StatementTimeout is the session's statement_timeout. Default 10s.
	StatementTimeout time.Duration
	// IdleInTransactionTimeout is the session's
	// idle_in_transaction_session_timeout: the server ends a session of ours
	// that sits in an open transaction this long, so we can never be the
	// stale lock holder. Default 5s.
	IdleInTransactionTimeout time.Duration
	// ConnectionCheckInterval is client_connection_check_interval: how often a
	// backend waiting on a lock checks that we are still there. Default 1s.
	ConnectionCheckInterval time.Duration
	// ApplyTimeout is the context deadline of one batch's transaction,
	// including connecting. Default 15s.
	ApplyTimeout time.Duration

	// RetryMin and RetryMax bound the jittered exponential backoff between
	// attempts at a batch that failed with a retryable error.
	// Defaults 100ms and 10s.
	RetryMin, RetryMax time.Duration

	// TripAfter is how many consecutive failed attempts (retryable errors
	// only) open the target's breaker. Default 3.
	TripAfter uint32
	// BreakerMinOpen and BreakerMaxOpen bound how long the breaker stays
	// open before it lets one probe batch through: the first opening lasts
	// about BreakerMinOpen, each consecutive one about twice as long (with
	// jitter), up to BreakerMaxOpen: the longest a target can sit idle after
	// its database recovers. Defaults 1s and 10s.
	BreakerMinOpen, BreakerMaxOpen time.Duration

	// LagInterval is how often lag is measured against the log end, whether
	// or not batches are being applied. Default 1s.
	LagInterval time.Duration
	// StallTimeout is how long a partition's reader may go without handing
	// over a record while the log has records for it, before it is rebuilt
	// (kafka-go readers can hang after a broker restart). Default 20s.
	StallTimeout time.Duration

	// StatusInterval is how often the replica publishes its status to
	// sluice.status (and at once on every breaker change). Default 2s.
	StatusInterval time.Duration

	// SessionTimeout is the consumer group session timeout: how long the
	// group waits for a vanished member before moving its partitions.
	// Default 10s.
	SessionTimeout time.Duration

	// Blockers is the policy for sessions that stall the target by holding
	// locks while idle in a transaction; off by default.
	Blockers BlockerPolicy

	// Logger receives the applier's logs; nil discards.
	Logger *slog.Logger
	// Registerer receives the applier's metrics; nil registers nothing.
	Registerer prometheus.Registerer

	now func() time.Time
	// aheadGrace is how long a position beyond the log end must last
	// before the partition is stopped as ahead of its log. 15s.
	aheadGrace time.Duration
}

var targetName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,47}$`)

// Validate reports the first field at fault.
func (c Config) Validate() error {
	switch {
	case !targetName.MatchString(c.Target):
		return fmt.Errorf("%w: target name %q: use 1-48 lower-case letters, digits, '-' or '_'", ErrInvalidConfig, c.Target)
	case c.Cluster == nil:
		return fmt.Errorf("%w: target %s: Cluster is required", ErrInvalidConfig, c.Target)
	case c.DSN == "":
		return fmt.Errorf("%w: target %s: DSN is required", ErrInvalidConfig, c.Target)
	case c.SchemaVersion != 0 && c.SchemaVersion != schema.LatestVersion():
		return fmt.Errorf("%w: target %s: SchemaVersion %d: this build applies to schema version %d (run `sluice migrate`, then configure %d)",
			ErrInvalidConfig, c.Target, c.SchemaVersion, schema.LatestVersion(), schema.LatestVersion())
	case c.Blockers.After < 0 || c.Blockers.After > 0 && c.Blockers.After < time.Second:
		return fmt.Errorf("%w: target %s: the blocker policy's bound must be at least 1s (0: off)", ErrInvalidConfig, c.Target)
	case c.MaxConns < 0, c.BatchSize < 0, c.Linger < 0:
		return fmt.Errorf("%w: target %s: MaxConns, BatchSize and Linger must not be negative", ErrInvalidConfig, c.Target)
	}
	return nil
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Topic == "" {
		c.Topic = kafkaadmin.EventsTopic
	}
	if c.DLQTopic == "" {
		c.DLQTopic = kafkaadmin.DLQTopic(c.Target)
	}
	if c.Replica == "" {
		host, _ := os.Hostname()
		c.Replica = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if c.MaxConns == 0 {
		c.MaxConns = 2
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	def(&c.Linger, 20*time.Millisecond)
	def(&c.LockTimeout, 2*time.Second)
	def(&c.StatementTimeout, 10*time.Second)
	def(&c.IdleInTransactionTimeout, 5*time.Second)
	def(&c.ConnectionCheckInterval, time.Second)
	def(&c.ApplyTimeout, 15*time.Second)
	def(&c.RetryMin, 100*time.Millisecond)
	def(&c.RetryMax, 10*time.Second)
	def(&c.SessionTimeout, 10*time.Second)
	def(&c.BreakerMinOpen, time.Second)
	def(&c.BreakerMaxOpen, 10*time.Second)
	def(&c.LagInterval, time.Second)
	def(&c.StallTimeout, 20*time.Second)
	def(&c.StatusInterval, 2*time.Second)
	def(&c.aheadGrace, 15*time.Second)
	if c.TripAfter == 0 {
		c.TripAfter = 3
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
}

// session is what every session of the applier on its target runs with.
func (c *Config) session() targetdb.Session {
	return targetdb.Session{
		ApplicationName:          kafkaadmin.GroupID(c.Target),
		LockTimeout:              c.LockTimeout,
		StatementTimeout:         c.StatementTimeout,
		IdleInTransactionTimeout: c.IdleInTransactionTimeout,
		ConnectionCheckInterval:  c.ConnectionCheckInterval,
	}
}
