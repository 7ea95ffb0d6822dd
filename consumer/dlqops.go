package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/schema"
)

// DeadLetter is one record of a target's DLQ.
type DeadLetter struct {
	DLQOffset         int64  `json:"dlq_offset"`
	Source            string `json:"source"`
	ID                string `json:"id"`
	Error             string `json:"error"`
	OriginalPartition int    `json:"original_partition"`
	OriginalOffset    int64  `json:"original_offset"`
	FailedAt          string `json:"failed_at"`
	msg               kafka.Message
}

// DLQConfig names a target's DLQ and database.
type DLQConfig struct {
	Target  string
	Brokers []string
	DSN     string
	// All lists every record, not only those after the replay cursor.
	All bool
}

// dlqPool is a small pool for ctl, with the same session timeouts as the
// applier's.
func dlqPool(c DLQConfig) (*pgxpool.Pool, error) {
	cfg := Config{Target: c.Target, Brokers: c.Brokers, DSN: c.DSN}
	cfg.setDefaults()
	cfg.MaxConns = 1
	return newPool(cfg)
}

// ListDLQ returns the records of the target's DLQ that are still pending:
// after the replay cursor kept in the target (or all of them, with All).
func ListDLQ(ctx context.Context, c DLQConfig) ([]DeadLetter, error) {
	from := int64(0)
	if !c.All {
		pool, err := dlqPool(c)
		if err != nil {
			return nil, err
		}
		defer pool.Close()
		if from, err = dlqCursor(ctx, pool, c.Target); err != nil {
			return nil, err
		}
	}
	return readDLQ(ctx, c.Brokers, c.Target, from)
}

// dlqCursor is how far DLQ replays got: the target's offsets row for its
// DLQ topic (0 before the first replay).
func dlqCursor(ctx context.Context, pool *pgxpool.Pool, target string) (int64, error) {
	o, err := loadOffset(ctx, pool, DLQTopic(target), 0)
	if err != nil {
		return 0, fmt.Errorf("target %s: read the DLQ cursor: %w", target, err)
	}
	return o.next, nil
}

func readDLQ(ctx context.Context, brokers []string, target string, from int64) ([]DeadLetter, error) {
	var out []DeadLetter
	err := readToEnd(ctx, brokers, DLQTopic(target), from, func(m kafka.Message) { out = append(out, deadLetterOf(m)) })
	if errors.Is(err, errNoTopic) {
		return nil, nil // no DLQ yet: nothing was ever dead-lettered
	}
	return out, err
}

func deadLetterOf(m kafka.Message) DeadLetter {
	d := DeadLetter{DLQOffset: m.Offset, msg: m}
	for _, h := range m.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderError:
			d.Error = v
		case HeaderPartition:
			d.OriginalPartition, _ = strconv.Atoi(v)
		case HeaderOffset:
			d.OriginalOffset, _ = strconv.ParseInt(v, 10, 64)
		case HeaderFailedAt:
			d.FailedAt = v
		}
	}
	if ev, err := schema.DecodeEvent(m.Value); err == nil {
		d.Source, d.ID = ev.Source, ev.ID
	}
	return d
}

// ReplayResult says what a DLQ replay did.
type ReplayResult struct {
	Applied      int          `json:"applied"`
	Duplicates   int          `json:"duplicates"`
	StillFailing []DeadLetter `json:"still_failing"`
}

// ReplayDLQ applies the target's pending DLQ records to it again, once the
// cause is fixed. Each record and the replay cursor move in one transaction;
// a record that still fails is appended to the DLQ again (with its new
// error), so that the pending records are always those after the cursor.
func ReplayDLQ(ctx context.Context, c DLQConfig) (ReplayResult, error) {
	var res ReplayResult
	pool, err := dlqPool(c)
	if err != nil {
		return res, err
	}
	defer pool.Close()
	from, err := dlqCursor(ctx, pool, c.Target)
	if err != nil {
		return res, err
	}
	pending, err := readDLQ(ctx, c.Brokers, c.Target, from)
	if err != nil {
		return res, err
	}
	a := &Applier{cfg: Config{Target: c.Target, Brokers: c.Brokers, DLQTopic: DLQTopic(c.Target)}}
	a.cfg.setDefaults()
	a.dlq = newDLQWriter(a.cfg)
	defer a.dlq.Close()
	for _, d := range pending {
		cur := cursor{topic: DLQTopic(c.Target), partition: 0, next: d.DLQOffset + 1}
		orig := d.msg
		orig.Partition, orig.Offset = d.OriginalPartition, d.OriginalOffset
		rec := decodeRecord(orig)
		applyErr := rec.decodeErr
		var inserted int64
		if applyErr == nil {
			inserted, applyErr = applyTx(ctx, pool, []record{rec}, cur)
		}
		switch {
		case applyErr == nil:
			res.Applied += int(inserted)
			res.Duplicates += 1 - int(inserted)
		case Classify(applyErr) == Permanent:
			if err := a.deadLetter(ctx, record{msg: stripSluiceHeaders(d.msg)}, applyErr); err != nil {
				return res, fmt.Errorf("dead-letter again: %w", err)
			}
			if err := advanceOffset(ctx, pool, cur.topic, 0, cur.next); err != nil {
				return res, err
			}
			d.Error = applyErr.Error()
			res.StillFailing = append(res.StillFailing, d)
		default:
			return res, fmt.Errorf("target %s is not healthy; replay stopped at DLQ offset %d: %w", c.Target, d.DLQOffset, applyErr)
		}
	}
	return res, nil
}

// stripSluiceHeaders keeps the original record's own headers, so that a
// record dead-lettered again carries one set of sluice headers, not two.
func stripSluiceHeaders(m kafka.Message) kafka.Message {
	var keep []kafka.Header
	topic, part, off := m.Topic, m.Partition, m.Offset
	for _, h := range m.Headers {
		switch h.Key {
		case HeaderError, HeaderClass, HeaderTarget, HeaderFailedAt:
		case HeaderTopic:
			topic = string(h.Value)
		case HeaderPartition:
			part, _ = strconv.Atoi(string(h.Value))
		case HeaderOffset:
			off, _ = strconv.ParseInt(string(h.Value), 10, 64)
		default:
			keep = append(keep, h)
		}
	}
	m.Headers, m.Topic, m.Partition, m.Offset = keep, topic, part, off
	return m
}
