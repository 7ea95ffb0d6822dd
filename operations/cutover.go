package operations

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/control"
	"github.com/sluicehq/sluice/internal/deadletter"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
	"github.com/sluicehq/sluice/schema"
)

// backfillSession reads the old target: a long read-only snapshot, which
// waits on no lock of its applier and holds none it waits on.
var backfillSession = targetdb.Session{ApplicationName: "sluice-backfill", LockTimeout: 5 * time.Second, ConnectTimeout: 5 * time.Second}

// BackfillResult says what a backfill did: the ledger copy, and the events
// the old target had dead-lettered, offered to the new one.
type BackfillResult struct {
	targetdb.BackfillResult
	// FromDLQ is how many of the old target's dead letters the new target
	// applied (its schema may accept what the old one refused); Refused
	// those it refused in turn, with its reasons.
	FromDLQ int                 `json:"from_dlq"`
	Refused []deadletter.Letter `json:"refused"`
}

// Backfill fills target to from target from's ledger, through to's
// projections (see targetdb.Backfill), then offers to the events from had
// dead-lettered: they are not in its ledger, and to's schema may take them.
func (o *Ops) Backfill(ctx context.Context, to, from string, opts targetdb.BackfillOptions) (BackfillResult, error) {
	var res BackfillResult
	dst, err := o.Target(to)
	if err != nil {
		return res, err
	}
	src, err := o.Target(from)
	if err != nil {
		return res, err
	}
	conn, err := targetdb.Connect(ctx, src.DSN, backfillSession)
	if err != nil {
		return res, fmt.Errorf("target %s: %w", src.Name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	pool, err := targetdb.NewPool(dst.DSN, projectionSession, 1)
	if err != nil {
		return res, fmt.Errorf("target %s: %w", dst.Name, err)
	}
	defer pool.Close()
	applied, err := targetdb.Offsets(ctx, pool, o.topic)
	if err != nil {
		return res, fmt.Errorf("target %s: %w", dst.Name, err)
	}
	if len(applied) > 0 {
		return res, fmt.Errorf("%w: target %s already applied from the log (its positions: %v); a backfill now would apply "+
			"older events after newer ones. Fill a fresh database, or replay the log: sluice ctl rewind %s --to-offset earliest",
			ErrAlreadyApplied, dst.Name, applied, dst.Name)
	}
	resume, err := o.fence(ctx, dst.Name)
	if err != nil {
		return res, err
	}
	// An event the new target's schema refuses goes to its DLQ, as its
	// applier would send it, and the backfill goes on.
	if err := o.cluster.EnsureTopics(ctx, 1, kafkaadmin.DLQTopicSpec(dst.Name)); err != nil {
		return res, fmt.Errorf("create %s: %w", kafkaadmin.DLQTopic(dst.Name), err)
	}
	dlq := o.cluster.NewWriter(kafkaadmin.WriterConfig{Topic: kafkaadmin.DLQTopic(dst.Name), Linger: time.Millisecond,
		MaxAttempts: 3, BatchBytes: kafkaadmin.DLQMaxRecordBytes})
	defer dlq.Close()
	opts.DeadLetter = func(ctx context.Context, partition int, offset int64, value []byte, cause error) error {
		m := kafka.Message{Topic: o.topic, Partition: partition, Offset: offset, Value: value}
		if ev, err := schema.DecodeEvent(value); err == nil {
			m.Key = []byte(ev.PartitionKey())
		}
		m = deadletter.Fit(deadletter.Wrap(m, cause, targetdb.Classify(cause).String(), dst.Name, time.Now()), kafkaadmin.DLQMaxRecordBytes)
		return dlq.WriteMessages(ctx, m)
	}
	if res.BackfillResult, err = targetdb.Backfill(ctx, conn, pool, o.topic, dst.Projections, opts); err != nil {
		return res, err // still fenced: the applier waits for the run that finishes the backfill
	}
	if err = o.offerDeadLetters(ctx, pool, dst, src.Name, &res); err != nil {
		return res, err
	}
	return res, resume(ctx)
}

// ErrAlreadyApplied is returned by Backfill for a target that has already
// applied from the log.
var ErrAlreadyApplied = errors.New("the target already applied from the log")

// backfiller names the backfill in the control topic's "by".
const backfiller = "sluice-backfill"

// fence pauses target for the backfill, so that an applier started meanwhile
// (the Kubernetes base starts one right after migrate) applies nothing while
// older events are still being copied in, and waits until every live
// replica reports it obeys. The returned resume lifts the pause once the
// backfill is done — only if the backfill set it: an operator's pause stays.
func (o *Ops) fence(ctx context.Context, target string) (resume func(context.Context) error, err error) {
	desired, err := o.plane.Current(ctx)
	if err != nil {
		return nil, fmt.Errorf("read %s's desired state: %w", target, err)
	}
	resume = func(context.Context) error { return nil }
	if d := desired[target]; !d.Paused {
		if _, err := o.plane.SetPaused(ctx, target, true, backfiller); err != nil {
			return nil, fmt.Errorf("pause %s for the backfill: %w", target, err)
		}
		resume = func(ctx context.Context) error {
			if _, err := o.plane.SetPaused(ctx, target, false, backfiller); err != nil {
				return fmt.Errorf("backfill done, but %s could not be resumed (sluice ctl resume %s): %w", target, target, err)
			}
			return nil
		}
	} else if d.By == backfiller {
		// An earlier run paused it and stopped: this run resumes it.
		resume = func(ctx context.Context) error {
			_, err := o.plane.SetPaused(ctx, target, false, backfiller)
			return err
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		statuses, err := o.plane.Statuses(ctx)
		if err != nil {
			return nil, err
		}
		running := []string{}
		for _, r := range statuses[target] {
			if !r.Stale(time.Now()) && !r.Paused {
				running = append(running, r.Replica)
			}
		}
		if len(running) == 0 {
			return resume, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s's applier replicas %v still apply after it was paused for the backfill; stop them and run it again", target, running)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// offerDeadLetters applies the old target's dead letters to the new one, once
// each: a cursor row in the new target ("sluice.backfill.dlq:<old>") records
// how far it got, so a rerun offers only what it has not yet.
func (o *Ops) offerDeadLetters(ctx context.Context, pool *pgxpool.Pool, dst Target, from string, res *BackfillResult) error {
	cursorTopic := "sluice.backfill.dlq:" + from
	off, err := targetdb.LoadOffset(ctx, pool, cursorTopic, 0)
	if err != nil {
		return err
	}
	letters, err := o.readDLQ(ctx, from, off.Next)
	if err != nil {
		return fmt.Errorf("read %s's DLQ: %w", from, err)
	}
	next := off.Next
	for _, l := range letters {
		inserted, refused, err := applyLetter(ctx, pool, l, cursorTopic, next, dst.Projections)
		if err != nil {
			return fmt.Errorf("target %s: offering %s's dead letters stopped at DLQ offset %d: %w", dst.Name, from, l.DLQOffset, err)
		}
		if refused != nil {
			l.Error = refused.Error()
			res.Refused = append(res.Refused, l)
		}
		res.FromDLQ += int(inserted)
		next = l.DLQOffset + 1
	}
	return nil
}

// Check is one condition of a cutover, as `ctl cutover-check` prints it.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// CutoverCheck says whether target to may take over from target from:
// each condition with what was found. maxLag is the most records to may
// still lag behind the log.
func (o *Ops) CutoverCheck(ctx context.Context, from, to string, maxLag int64) ([]Check, error) {
	views, err := o.Status(ctx, to)
	if err != nil {
		return nil, err
	}
	v := views[0]
	var checks []Check
	add := func(name string, ok bool, format string, args ...any) {
		checks = append(checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}
	add("applier up", v.Applier == "up", "%s's applier: %s (%d replicas reporting)", to, v.Applier, len(v.Replicas))
	add("log positions known", len(v.LagUnknown) == 0, "%s's lag is unknown on partitions %v (ahead of the log, or behind its start: see ctl status)", to, v.LagUnknown)
	add("caught up", len(v.LagUnknown) == 0 && v.LagMessages >= 0 && v.LagMessages <= maxLag && v.DatabaseError == "",
		"%s lags %s records (at most %d), %.1fs", to, v.LagText(), maxLag, v.LagSeconds)
	add("breaker closed", v.Breaker == "closed", "%s's breaker: %s", to, v.Breaker)
	failing := ""
	for _, r := range v.Replicas {
		for _, p := range r.Projections {
			if p.LastError != "" {
				failing += fmt.Sprintf(" %s (%s)", p.Name, p.LastError)
			}
		}
	}
	add("projections error-free", failing == "", "failing:%s", map[bool]string{true: " none", false: failing}[failing == ""])
	letters, err := o.ListDLQ(ctx, to, false)
	if err != nil {
		return nil, err
	}
	add("DLQ empty", len(letters) == 0, "%d dead-lettered events pending on %s (replay or acknowledge them first)", len(letters), to)
	res, err := o.Verify(ctx, VerifyRequest{A: from, B: to, UpToWatermark: true, Keys: 5})
	if err != nil {
		return nil, err
	}
	detail := fmt.Sprintf("%d events of %s compared in full up to the common watermark %v", res.Events, from, res.Watermark)
	if len(res.Differing) > 0 {
		detail = fmt.Sprintf("%d buckets differ up to the common watermark; first keys: %v", len(res.Differing), res.Keys)
	}
	add("verify equal", len(res.Differing) == 0, "%s", detail)
	fa, _ := o.Target(from)
	ft, _ := o.Target(to)
	switch {
	case fa.Projections.Empty() && ft.Projections.Empty() && fa.Facts == "" && ft.Facts == "":
		add("facts equal", true, "neither target has projections: the ledgers are what readers read")
	default:
		fr, err := o.CompareFacts(ctx, from, to, 3)
		if err != nil {
			add("facts equal", false, "%v", err)
		} else {
			add("facts equal", fr.Same(), "%s", fr.Summary(from, to))
		}
	}
	for _, name := range []string{from, to} {
		rc, err := o.ReplayCheck(ctx, name, 3, nil)
		if err != nil {
			add("replay equal ("+name+")", false, "%v", err)
			continue
		}
		add("replay equal ("+name+")", rc.Same(), "%s", rc.Summary(name))
	}
	return checks, nil
}

// RetireResult says what retiring a target left behind.
type RetireResult struct {
	// Stopped is whether every replica reported it stopped in time.
	Stopped bool `json:"stopped"`
	// GroupDeleted is whether the target's consumer group was removed.
	GroupDeleted bool `json:"group_deleted"`
	// LedgerEvents and Tables are what its database still holds: sluice
	// never drops a table; that is the owner's decision.
	LedgerEvents int64    `json:"ledger_events"`
	Tables       []string `json:"tables"`
}

// Retire stops a target's applier replicas through the control topic
// (every replica exits, and one started later exits at once), waits up to
// wait for them to go, and removes its consumer group.
func (o *Ops) Retire(ctx context.Context, name, by string, wait time.Duration) (RetireResult, error) {
	var res RetireResult
	t, err := o.Target(name)
	if err != nil {
		return res, err
	}
	if _, err := o.plane.SetRetired(ctx, t.Name, by); err != nil {
		return res, err
	}
	deadline := time.Now().Add(wait)
	for {
		statuses, err := o.plane.Statuses(ctx)
		if err == nil && countLive(statuses[t.Name]) == 0 {
			res.Stopped = true
			break
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if res.Stopped {
		if err := o.cluster.DeleteGroup(ctx, kafkaadmin.GroupID(t.Name)); err != nil {
			return res, err
		}
		res.GroupDeleted = true
	}
	conn, err := targetdb.Connect(ctx, t.DSN, operatorSession)
	if err != nil {
		return res, fmt.Errorf("target %s: %w", t.Name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM sluice_events`).Scan(&res.LedgerEvents); err != nil {
		return res, err
	}
	rows, err := conn.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1`)
	if err != nil {
		return res, err
	}
	res.Tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
	return res, err
}

func countLive(replicas []control.ApplierStatus) int {
	n := 0
	for _, r := range replicas {
		if !r.Stale(time.Now()) {
			n++
		}
	}
	return n
}
