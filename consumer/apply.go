package consumer

import (
	"context"
	"encoding/json"
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

const insertFromStaging = `INSERT INTO sluice_events
	(source, id, type, subject, time, datacontenttype, dataschema, data, data_base64, extensions, kafka_partition, kafka_offset)
SELECT DISTINCT ON (source, id)
	source, id, type, subject, time, datacontenttype, dataschema, data, data_base64, extensions, kafka_partition, kafka_offset
FROM sluice_staging
ORDER BY source, id, kafka_offset
ON CONFLICT (source, id) DO NOTHING`

const upsertOffset = `INSERT INTO sluice_offsets (topic, partition, next_offset, updated_at)
VALUES ($1, $2, $3, now())
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at`

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

// applyTx writes recs and the partition's next offset in one transaction and
// returns how many rows were new. recs must all be decodable and in offset
// order.
func applyTx(ctx context.Context, pool *pgxpool.Pool, topic string, recs []record) (int64, error) {
	rows := make([][]any, len(recs))
	for i := range recs {
		row, err := stagingRow(&recs[i])
		if err != nil {
			return 0, err
		}
		rows[i] = row
	}
	last := recs[len(recs)-1].msg
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
		b.Queue(upsertOffset, topic, int32(last.Partition), last.Offset+1)
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

// loadOffset returns the next offset to apply for a partition, as recorded by
// the last committed batch, and false when the target has never applied it.
func loadOffset(ctx context.Context, pool *pgxpool.Pool, topic string, partition int) (int64, bool, error) {
	var next int64
	err := pool.QueryRow(ctx, `SELECT next_offset FROM sluice_offsets WHERE topic = $1 AND partition = $2`, topic, int32(partition)).Scan(&next)
	if err == pgx.ErrNoRows {
		return 0, false, nil
	}
	return next, err == nil, err
}
