package operations

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/deadletter"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
)

// dlqSession is the applier's guard rails, for a replay that writes to the
// target as the applier does.
var dlqSession = targetdb.Session{
	ApplicationName: "sluice-ctl", LockTimeout: 2 * time.Second, StatementTimeout: 10 * time.Second,
	IdleInTransactionTimeout: 5 * time.Second, ConnectionCheckInterval: time.Second,
}

// ListDLQ returns the records of the target's DLQ that are still pending:
// after the replay cursor kept in the target (or all of them, with all).
func (o *Ops) ListDLQ(ctx context.Context, name string, all bool) ([]deadletter.Letter, error) {
	t, err := o.Target(name)
	if err != nil {
		return nil, err
	}
	from := int64(0)
	if !all {
		pool, err := targetdb.NewPool(t.DSN, dlqSession, 1)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		defer pool.Close()
		if from, err = dlqCursor(ctx, pool, t.Name); err != nil {
			return nil, err
		}
	}
	return o.readDLQ(ctx, t.Name, from)
}

// dlqCursor is how far DLQ replays got: the target's offsets row for its
// DLQ topic (0 before the first replay).
func dlqCursor(ctx context.Context, pool *pgxpool.Pool, target string) (int64, error) {
	off, err := targetdb.LoadOffset(ctx, pool, kafkaadmin.DLQTopic(target), 0)
	if err != nil {
		return 0, fmt.Errorf("target %s: read the DLQ cursor: %w", target, err)
	}
	return off.Next, nil
}

func (o *Ops) readDLQ(ctx context.Context, target string, from int64) ([]deadletter.Letter, error) {
	var out []deadletter.Letter
	err := o.cluster.ReadToEnd(ctx, kafkaadmin.DLQTopic(target), from, func(m kafka.Message) { out = append(out, deadletter.Parse(m)) })
	if errors.Is(err, kafkaadmin.ErrNoTopic) {
		return nil, nil // no DLQ yet: nothing was ever dead-lettered
	}
	return out, err
}

// ReplayResult says what a DLQ replay did.
type ReplayResult struct {
	Applied      int                 `json:"applied"`
	Duplicates   int                 `json:"duplicates"`
	StillFailing []deadletter.Letter `json:"still_failing"`
}

// ReplayDLQ applies the target's pending DLQ records to it again, once the
// cause is fixed. Each record and the replay cursor move in one transaction;
// a record that still fails is appended to the DLQ again (with its new
// error), so that the pending records are always those after the cursor.
func (o *Ops) ReplayDLQ(ctx context.Context, name string) (ReplayResult, error) {
	var res ReplayResult
	t, err := o.Target(name)
	if err != nil {
		return res, err
	}
	pool, err := targetdb.NewPool(t.DSN, dlqSession, 1)
	if err != nil {
		return res, fmt.Errorf("target %s: %w", t.Name, err)
	}
	defer pool.Close()
	from, err := dlqCursor(ctx, pool, t.Name)
	if err != nil {
		return res, err
	}
	pending, err := o.readDLQ(ctx, t.Name, from)
	if err != nil {
		return res, err
	}
	dlq := o.cluster.NewWriter(kafkaadmin.WriterConfig{Topic: kafkaadmin.DLQTopic(t.Name), Linger: time.Millisecond,
		MaxAttempts: 3, BatchBytes: kafkaadmin.DLQMaxRecordBytes})
	defer dlq.Close()
	for _, d := range pending {
		inserted, refused, err := applyLetter(ctx, pool, d, kafkaadmin.DLQTopic(t.Name), from, t.Projections)
		switch {
		case errors.Is(err, targetdb.ErrOffsetsMoved):
			return res, fmt.Errorf("target %s: another replay moved the DLQ cursor; replay stopped at DLQ offset %d: %w", t.Name, d.DLQOffset, err)
		case err != nil:
			return res, fmt.Errorf("target %s is not healthy; replay stopped at DLQ offset %d: %w", t.Name, d.DLQOffset, err)
		case refused == nil:
			res.Applied += int(inserted)
			res.Duplicates += 1 - int(inserted)
		default:
			again := deadletter.Fit(deadletter.Wrap(d.Original(), refused, targetdb.Permanent.String(), t.Name, time.Now()),
				kafkaadmin.DLQMaxRecordBytes)
			if err := dlq.WriteMessages(ctx, again); err != nil {
				return res, fmt.Errorf("dead-letter again: %w", err)
			}
			d.Error = refused.Error()
			res.StillFailing = append(res.StillFailing, d)
		}
		from = d.DLQOffset + 1
	}
	return res, nil
}

// applyLetter applies a dead letter's original event to a target, through
// its projections, moving the cursor row cursorTopic from from past the
// letter in the same transaction. A refusal for the event's own data
// (permanent) moves the cursor alone and is returned as refused; any other
// failure is err, and nothing moved.
func applyLetter(ctx context.Context, pool *pgxpool.Pool, l deadletter.Letter, cursorTopic string, from int64, ps *targetdb.Projections) (inserted int64, refused, err error) {
	cur := targetdb.Cursor{Topic: cursorTopic, Partition: 0, From: from, Next: l.DLQOffset + 1}
	rec := targetdb.Decode(l.Original())
	applyErr := rec.DecodeErr
	if applyErr == nil {
		inserted, applyErr = targetdb.Apply(ctx, pool, []targetdb.Record{rec}, cur, ps)
	}
	if applyErr == nil {
		return inserted, nil, nil
	}
	if targetdb.Classify(applyErr) != targetdb.Permanent {
		return 0, nil, applyErr
	}
	if err := targetdb.Advance(ctx, pool, cur); err != nil {
		return 0, nil, err
	}
	return 0, applyErr, nil
}
