package consumer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
)

// TargetStatus is what an operator needs to know about one target, as
// `sluice ctl status` shows it.
type TargetStatus struct {
	Target      string            `json:"target"`
	LagMessages int64             `json:"lag_messages"`
	LagSeconds  float64           `json:"lag_seconds"`
	ApplyRate   float64           `json:"apply_rate"` // rows applied per second over the last 10 seconds
	Partitions  []PartitionStatus `json:"partitions"`
	Blocking    []BlockingSession `json:"blocking_sessions"`
	// DatabaseError says why the target could not be asked, when it could not.
	DatabaseError string `json:"database_error,omitempty"`
}

// PartitionStatus is one partition of the events topic as seen from a target.
type PartitionStatus struct {
	Partition   int     `json:"partition"`
	LogStart    int64   `json:"log_start"`
	LogEnd      int64   `json:"log_end"`
	Applied     int64   `json:"applied"` // next offset to apply
	LagMessages int64   `json:"lag_messages"`
	LagSeconds  float64 `json:"lag_seconds"`
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

// InspectConfig names what Inspect looks at.
type InspectConfig struct {
	Target  string
	Brokers []string
	Topic   string // default sluice.events
	DSN     string
	// MinTransactionAge hides transactions younger than this from the
	// blocking sessions (short ones come and go). Default 1s.
	MinTransactionAge time.Duration
}

// Inspect reports a target's lag per partition and the sessions blocking it.
// It never waits on the target's locks itself: its session runs with a short
// lock_timeout and statement_timeout. A target that cannot be asked is
// reported (DatabaseError) with lag taken from the group's commits.
func Inspect(ctx context.Context, c InspectConfig) (TargetStatus, error) {
	if c.Topic == "" {
		c.Topic = "sluice.events"
	}
	if c.MinTransactionAge <= 0 {
		c.MinTransactionAge = time.Second
	}
	st := TargetStatus{Target: c.Target}
	transport := &kafka.Transport{MetadataTTL: time.Second}
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: 5 * time.Second, Transport: transport}

	starts, ends, err := logBounds(ctx, client, c.Topic)
	if err != nil {
		return st, fmt.Errorf("kafka: %w", err)
	}
	applied, dbErr := inspectDatabase(ctx, c, &st)
	from := "target"
	if dbErr != nil {
		st.DatabaseError = dbErr.Error()
		from = "group"
		applied, err = groupOffsets(ctx, client, c.Topic, GroupID(c.Target), len(ends))
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
			LagMessages: max(ends[p]-next, 0)}
		if ps.LagMessages > 0 {
			if ts, err := recordTime(ctx, client, c.Topic, p, max(next, starts[p])); err == nil {
				ps.LagSeconds = now.Sub(ts).Seconds()
			}
		}
		st.LagMessages += ps.LagMessages
		st.LagSeconds = max(st.LagSeconds, ps.LagSeconds)
		st.Partitions = append(st.Partitions, ps)
	}
	sort.Slice(st.Partitions, func(i, j int) bool { return st.Partitions[i].Partition < st.Partitions[j].Partition })
	return st, nil
}

func logBounds(ctx context.Context, client *kafka.Client, topic string) (starts, ends map[int]int64, err error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, nil, err
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return nil, nil, fmt.Errorf("topic %s: %v", topic, md.Topics[0].Error)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, nil, err
	}
	starts, ends = map[int]int64{}, map[int]int64{}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, nil, po.Error
		}
		starts[po.Partition], ends[po.Partition] = po.FirstOffset, po.LastOffset
	}
	return starts, ends, nil
}

func groupOffsets(ctx context.Context, client *kafka.Client, topic, group string, partitions int) (map[int]int64, error) {
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error == nil {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// blockingSessions finds sessions that block the target's appliers now, and
// sessions that are not ours holding or awaiting a lock on sluice's tables in
// a transaction older than the threshold: while the breaker is open none of
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
	WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
	  AND c.relname IN ('sluice_events', 'sluice_offsets')
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

func inspectDatabase(ctx context.Context, c InspectConfig, st *TargetStatus) (map[int]int64, error) {
	cc, err := pgx.ParseConfig(c.DSN)
	if err != nil {
		return nil, fmt.Errorf("%w: targets[%s].dsn cannot be parsed", ErrInvalidConfig, c.Target)
	}
	cc.RuntimeParams["application_name"] = "sluice-ctl"
	cc.RuntimeParams["lock_timeout"] = "1000"
	cc.RuntimeParams["statement_timeout"] = "5000"
	cc.ConnectTimeout = 3 * time.Second
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	// The blocking sessions first: they matter most when the rest times out.
	rows, err := conn.Query(ctx, blockingSessions, GroupID(c.Target), c.MinTransactionAge.Seconds())
	if err != nil {
		return nil, fmt.Errorf("find blocking sessions: %w", err)
	}
	for rows.Next() {
		var b BlockingSession
		if err := rows.Scan(&b.PID, &b.User, &b.Application, &b.Client, &b.State, &b.TransactionAge, &b.StateAge, &b.Why, &b.Query); err != nil {
			rows.Close()
			return nil, err
		}
		st.Blocking = append(st.Blocking, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find blocking sessions: %w", err)
	}

	applied := map[int]int64{}
	rows, err = conn.Query(ctx, `SELECT partition, next_offset FROM sluice_offsets WHERE topic = $1`, c.Topic)
	if err != nil {
		return nil, fmt.Errorf("read sluice_offsets: %w", err)
	}
	for rows.Next() {
		var p int32
		var next int64
		if err := rows.Scan(&p, &next); err != nil {
			rows.Close()
			return nil, err
		}
		applied[int(p)] = next
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read sluice_offsets: %w", err)
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
