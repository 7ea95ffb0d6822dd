package operations

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
)

// TargetStatus is what an operator needs to know about one target, as
// `sluice ctl status` shows it.
type TargetStatus struct {
	Target string `json:"target"`
	// LagMessages is the records the target has yet to apply, summed over
	// its partitions; -1 when the lag of one of them is unknown (LagUnknown).
	LagMessages int64 `json:"lag_messages"`
	// LagUnknown lists the partitions whose lag cannot be known: ahead of
	// the log, or behind its start (see PartitionStatus.LagUnknown).
	LagUnknown []int             `json:"lag_unknown,omitempty"`
	LagSeconds float64           `json:"lag_seconds"`
	ApplyRate  float64           `json:"apply_rate"` // rows applied per second over the last 10 seconds
	Partitions []PartitionStatus `json:"partitions"`
	Blocking   []BlockingSession `json:"blocking_sessions"`
	// DatabaseError says why the target could not be asked, when it could not.
	DatabaseError string `json:"database_error,omitempty"`
}

// PartitionStatus is one partition of the events topic as seen from a target.
type PartitionStatus struct {
	Partition int   `json:"partition"`
	LogStart  int64 `json:"log_start"`
	LogEnd    int64 `json:"log_end"`
	Applied   int64 `json:"applied"` // next offset to apply
	// LagMessages is LogEnd − Applied; -1 when LagUnknown.
	LagMessages int64   `json:"lag_messages"`
	LagSeconds  float64 `json:"lag_seconds"`
	// LagUnknown is set when the target's position says nothing about what
	// it has yet to apply: AheadOfLog, LogPassed, or an applier replica
	// found the log's record at the position is not the one it applied.
	LagUnknown bool `json:"lag_unknown,omitempty"`
	// LogPassed is set when Applied lies before LogStart: retention deleted
	// records the target never applied.
	LogPassed bool `json:"log_passed,omitempty"`
	// AheadOfLog is set when Applied lies beyond LogEnd: the topic was
	// recreated or truncated, and the target applies nothing of this
	// partition until an operator rewinds it.
	AheadOfLog bool `json:"ahead_of_log,omitempty"`
	// From says where Applied comes from: "target" (its sluice_offsets row,
	// exact) or "group" (the consumer group's commit, when the target
	// cannot be asked).
	From string `json:"from"`
}

// BlockingSession is a database session that holds up, or is about to hold
// up, a target's applier: what ended the incident once someone found it.
type BlockingSession struct {
	PID            int     `json:"pid"`
	User           string  `json:"user"`
	Application    string  `json:"application"`
	Client         string  `json:"client"`
	State          string  `json:"state"`
	TransactionAge float64 `json:"transaction_age_seconds"`
	StateAge       float64 `json:"state_age_seconds"`
	Why            string  `json:"why"`
	Query          string  `json:"query"`
}

// blockingSessions finds sessions that block the target's appliers now, and
// sessions that are not ours holding or awaiting a lock on the tables the
// applier writes — sluice's own and its projections' ($3) — in a
// transaction older than the threshold: while the breaker is open none of
// our sessions waits, yet the culprit must still be named.
const blockingSessions = `
WITH reasons AS (
	SELECT bp AS pid, 'blocks ' || w.application_name || ' (pid ' || w.pid || ')' AS why
	FROM pg_stat_activity w, unnest(pg_blocking_pids(w.pid)) AS bp
	WHERE w.application_name = $1
	UNION ALL
	SELECT l.pid, CASE WHEN l.granted THEN 'holds ' ELSE 'waits for ' END || l.mode || ' on ' || c.relname
	FROM pg_locks l
	JOIN pg_class c ON c.oid = l.relation
	JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
	  AND (c.relname = ANY($3::text[]) OR n.nspname || '.' || c.relname = ANY($3::text[]))
	  AND l.pid <> pg_backend_pid()
)
SELECT b.pid, coalesce(b.usename, ''), coalesce(b.application_name, ''), coalesce(host(b.client_addr), 'local'),
       coalesce(b.state, ''),
       coalesce(extract(epoch FROM now() - b.xact_start), 0)::float8,
       coalesce(extract(epoch FROM now() - b.state_change), 0)::float8,
       string_agg(DISTINCT r.why, '; '),
       left(coalesce(b.query, ''), 300)
FROM reasons r JOIN pg_stat_activity b ON b.pid = r.pid
WHERE b.application_name IS DISTINCT FROM $1
  AND b.xact_start < now() - make_interval(secs => $2)
GROUP BY 1, 2, 3, 4, 5, 6, 7, 9
ORDER BY 6 DESC`

// operatorSession is what every operator query runs with: it never waits
// long on a target's locks itself.
var operatorSession = targetdb.Session{
	ApplicationName: "sluice-ctl", LockTimeout: time.Second, StatementTimeout: 5 * time.Second,
	ConnectTimeout: 3 * time.Second,
}

// Inspect reports a target's lag per partition and the sessions blocking it.
// A target that cannot be asked is reported (DatabaseError) with lag taken
// from the group's commits.
func (o *Ops) Inspect(ctx context.Context, t Target) (TargetStatus, error) {
	st := TargetStatus{Target: t.Name}
	starts, ends, err := o.cluster.LogBounds(ctx, o.topic)
	if err != nil {
		return st, fmt.Errorf("kafka: %w", err)
	}
	applied, dbErr := inspectDatabase(ctx, t, o.topic, time.Second, &st)
	from := "target"
	if dbErr != nil {
		st.DatabaseError = dbErr.Error()
		from = "group"
		ids := make([]int, 0, len(ends))
		for id := range ends {
			ids = append(ids, id)
		}
		applied, err = o.cluster.GroupOffsets(ctx, o.topic, kafkaadmin.GroupID(t.Name), ids)
		if err != nil {
			return st, fmt.Errorf("kafka group offsets: %w", err)
		}
	}
	now := time.Now()
	for p := range ends {
		next, ok := applied[p]
		if !ok || next < 0 {
			next = starts[p] // never applied: it starts at the log start
		}
		ps := PartitionStatus{Partition: p, LogStart: starts[p], LogEnd: ends[p], Applied: next, From: from,
			LagMessages: max(ends[p]-next, 0), AheadOfLog: next > ends[p], LogPassed: next < starts[p]}
		if ps.LagMessages > 0 {
			if ts, err := o.cluster.RecordTime(ctx, o.topic, p, max(next, starts[p])); err == nil {
				ps.LagSeconds = now.Sub(ts).Seconds()
			}
		}
		st.LagMessages += ps.LagMessages
		st.LagSeconds = max(st.LagSeconds, ps.LagSeconds)
		st.Partitions = append(st.Partitions, ps)
	}
	sort.Slice(st.Partitions, func(i, j int) bool { return st.Partitions[i].Partition < st.Partitions[j].Partition })
	st.markUnknown(nil)
	return st, nil
}

// LagText is the target's lag in records, or "unknown": never a 0 that
// reads as caught up.
func (st TargetStatus) LagText() string { return lagText(st.LagMessages, len(st.LagUnknown) > 0) }

// LagText is the partition's lag in records, or "unknown".
func (p PartitionStatus) LagText() string { return lagText(p.LagMessages, p.LagUnknown) }

func lagText(messages int64, unknown bool) string {
	if unknown {
		return "unknown"
	}
	return strconv.FormatInt(messages, 10)
}

// markUnknown marks the partitions whose lag cannot be known — ahead of
// the log, behind its start, or in ahead (what the appliers found) — and
// makes their lag, and the target's, -1: never a 0 that reads as caught up.
func (st *TargetStatus) markUnknown(ahead []int) {
	st.LagUnknown = nil
	for i := range st.Partitions {
		p := &st.Partitions[i]
		if p.AheadOfLog || p.LogPassed || slices.Contains(ahead, p.Partition) {
			p.LagUnknown, p.LagMessages = true, -1
			st.LagUnknown = append(st.LagUnknown, p.Partition)
		}
	}
	if len(st.LagUnknown) > 0 {
		st.LagMessages = -1
	}
}

// BlockingSessions returns the sessions that block the target's appliers
// now, and the sessions that are not sluice's holding or awaiting a lock on
// sluice's tables or those of the target's projections in a transaction
// older than minAge.
func BlockingSessions(ctx context.Context, conn *pgx.Conn, t Target, minAge time.Duration) ([]BlockingSession, error) {
	tables := append([]string{"sluice_events", "sluice_offsets"}, t.Projections.Tables()...)
	rows, err := conn.Query(ctx, blockingSessions, kafkaadmin.GroupID(t.Name), minAge.Seconds(), tables)
	if err != nil {
		return nil, fmt.Errorf("find blocking sessions: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (BlockingSession, error) {
		var b BlockingSession
		err := row.Scan(&b.PID, &b.User, &b.Application, &b.Client, &b.State, &b.TransactionAge, &b.StateAge, &b.Why, &b.Query)
		return b, err
	})
}

func inspectDatabase(ctx context.Context, t Target, topic string, minAge time.Duration, st *TargetStatus) (map[int]int64, error) {
	conn, err := targetdb.Connect(ctx, t.DSN, operatorSession)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", t.Name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	// The blocking sessions first: they matter most when the rest times out.
	if st.Blocking, err = BlockingSessions(ctx, conn, t, minAge); err != nil {
		return nil, err
	}
	applied, err := targetdb.Offsets(ctx, conn, topic)
	if err != nil {
		return nil, err
	}
	var recent int64
	err = conn.QueryRow(ctx, `SELECT count(*) FROM sluice_events WHERE applied_at > now() - interval '10 seconds'`).Scan(&recent)
	if err != nil && !errors.Is(err, context.Canceled) {
		// A locked sluice_events makes this time out; the rest still stands.
		st.DatabaseError = "apply rate unknown: " + err.Error()
	}
	st.ApplyRate = float64(recent) / 10
	return applied, nil
}
