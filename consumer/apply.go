package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/schema"
)

// record is one Kafka message of a batch with its decoded event (or the
// reason it could not be decoded).
type record struct {
	msg       kafka.Message
	event     schema.Event
	decodeErr error
}

func decodeRecord(m kafka.Message) record {
	ev, err := schema.DecodeEvent(m.Value)
	if err != nil {
		err = fmt.Errorf("decode record %d/%d: %w", m.Partition, m.Offset, err)
	}
	return record{msg: m, event: ev, decodeErr: err}
}

var stagingColumns = []string{
	"source", "id", "type", "subject", "time", "datacontenttype", "dataschema",
	"data", "data_base64", "extensions", "kafka_partition", "kafka_offset",
}

// insertFromStaging needs no DISTINCT: ON CONFLICT DO NOTHING also skips a
// second copy of an event within the same batch, and by contract every copy
// of a (source, id) is the same event.
const insertFromStaging = `INSERT INTO sluice_events
	(source, id, type, subject, time, datacontenttype, dataschema, data, data_base64, extensions, kafka_partition, kafka_offset)
SELECT source, id, type, subject, time, datacontenttype, dataschema, data, data_base64, extensions, kafka_partition, kafka_offset
FROM sluice_staging
ON CONFLICT (source, id) DO NOTHING`

const upsertOffset = `INSERT INTO sluice_offsets (topic, partition, next_offset, updated_at)
VALUES ($1, $2, $3, now())
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at`

// rewindOffset moves a partition to an operator's offset and records the
// rewind's id in the same statement: a partition applies a rewind once.
const rewindOffset = `INSERT INTO sluice_offsets (topic, partition, next_offset, rewind_id, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,
	rewind_id = EXCLUDED.rewind_id, updated_at = EXCLUDED.updated_at
WHERE sluice_offsets.rewind_id IS DISTINCT FROM EXCLUDED.rewind_id`

func nullable[T comparable](v T) any {
	var zero T
	if v == zero {
		return nil
	}
	return v
}

func stagingRow(r *record) ([]any, error) {
	ev := &r.event
	var data, ext any
	if ev.Data != nil {
		data = []byte(ev.Data)
	}
	if ev.Extensions != nil {
		b, err := json.Marshal(ev.Extensions)
		if err != nil {
			return nil, err
		}
		ext = b
	}
	var b64 any
	if ev.DataBase64 != nil {
		b64 = ev.DataBase64
	}
	var t any
	if !ev.Time.IsZero() {
		t = ev.Time
	}
	return []any{
		ev.Source, ev.ID, ev.Type, nullable(ev.Subject), t, nullable(ev.DataContentType),
		nullable(ev.DataSchema), data, b64, ext, int32(r.msg.Partition), r.msg.Offset,
	}, nil
}

// cursor is the offsets row a transaction moves forward.
type cursor struct {
	topic     string
	partition int
	next      int64
}

func cursorAfter(topic string, last kafka.Message) cursor {
	return cursor{topic: topic, partition: last.Partition, next: last.Offset + 1}
}

// applyTx writes recs and moves cur in one transaction, and returns how many
// rows were new. recs must all be decodable.
func applyTx(ctx context.Context, pool *pgxpool.Pool, recs []record, cur cursor) (int64, error) {
	rows := make([][]any, len(recs))
	for i := range recs {
		row, err := stagingRow(&recs[i])
		if err != nil {
			return 0, err
		}
		rows[i] = row
	}
	var inserted int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"sluice_staging"}, stagingColumns, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("copy into staging: %w", err)
		}
		var b pgx.Batch
		b.Queue(insertFromStaging).Exec(func(ct pgconn.CommandTag) error {
			inserted = ct.RowsAffected()
			return nil
		})
		b.Queue(upsertOffset, cur.topic, int32(cur.partition), cur.next)
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return fmt.Errorf("insert batch: %w", err)
		}
		return nil
	})
	return inserted, err
}

// advanceOffset records that everything before next was dealt with, for a
// tail of dead-lettered records that applyTx never saw.
func advanceOffset(ctx context.Context, pool *pgxpool.Pool, topic string, partition int, next int64) error {
	_, err := pool.Exec(ctx, upsertOffset, topic, int32(partition), next)
	return err
}

// appliedOffset is a partition's offsets row.
type appliedOffset struct {
	next     int64
	rewindID string // the last rewind applied to the partition
	found    bool   // false when the target never applied the partition
}

// loadOffset reads a partition's offsets row.
func loadOffset(ctx context.Context, pool *pgxpool.Pool, topic string, partition int) (appliedOffset, error) {
	var o appliedOffset
	var rewind *string
	err := pool.QueryRow(ctx, `SELECT next_offset, rewind_id FROM sluice_offsets WHERE topic = $1 AND partition = $2`,
		topic, int32(partition)).Scan(&o.next, &rewind)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, nil
	}
	if err != nil {
		return o, err
	}
	o.found = true
	if rewind != nil {
		o.rewindID = *rewind
	}
	return o, nil
}

// applyRewind moves a partition to offset for rewind id, unless that rewind
// was already applied to it; it reports whether it moved it.
func applyRewind(ctx context.Context, pool *pgxpool.Pool, topic string, partition int, offset int64, id string) (bool, error) {
	ct, err := pool.Exec(ctx, rewindOffset, topic, int32(partition), offset, id)
	return ct.RowsAffected() == 1, err
}
