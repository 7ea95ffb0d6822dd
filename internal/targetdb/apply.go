package targetdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/schema"
)

// Record is one Kafka message with its decoded event, or the reason it
// could not be decoded (then it can only be dead-lettered).
type Record struct {
	Msg       kafka.Message
	Event     schema.Event
	DecodeErr error
}

// Decode decodes m's value as an event.
func Decode(m kafka.Message) Record {
	ev, err := schema.DecodeEvent(m.Value)
	if err != nil {
		err = fmt.Errorf("decode record %d/%d: %w", m.Partition, m.Offset, err)
	}
	return Record{Msg: m, Event: ev, DecodeErr: err}
}

// Cursor moves an offsets row: everything of Topic's Partition before Next
// is in the target once it is written. From is what the row holds now, as
// far as the writer knows: the move is a compare-and-set on it, so a writer
// that lost the partition (an old owner whose transaction outlived its
// generation) or raced an operator's rewind can never move the row back or
// over the rewind. A row that does not exist yet is created whatever From is.
type Cursor struct {
	Topic     string
	Partition int
	From      int64
	Next      int64
	// LastTime is the Kafka timestamp of the record at Next−1 (zero when
	// unknown): the log's fingerprint at the position, checked on resume.
	LastTime time.Time
}

// CursorAfter is the cursor from from to just past last.
func CursorAfter(topic string, from int64, last kafka.Message) Cursor {
	return Cursor{Topic: topic, Partition: last.Partition, From: from, Next: last.Offset + 1, LastTime: last.Time}
}

func (cur Cursor) lastTime() any {
	if cur.LastTime.IsZero() {
		return nil
	}
	return cur.LastTime
}

const moveOffset = `INSERT INTO sluice_offsets (topic, partition, next_offset, last_record_time, updated_at)
VALUES ($1, $2, $4, $5, now())
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,
	last_record_time = EXCLUDED.last_record_time, updated_at = EXCLUDED.updated_at
WHERE sluice_offsets.next_offset = $3`

// moveStatement is moveOffset with cur's values written in, to go in one
// message with other statements (a message of several statements takes no
// parameters).
func (cur Cursor) moveStatement() string {
	last := "NULL"
	if !cur.LastTime.IsZero() {
		last = "'" + cur.LastTime.UTC().Format("2006-01-02 15:04:05.999999Z07:00") + "'::timestamptz"
	}
	return strings.NewReplacer(
		"$1", quoteLiteral(cur.Topic),
		"$2", strconv.Itoa(cur.Partition),
		"$3", strconv.FormatInt(cur.From, 10),
		"$4", strconv.FormatInt(cur.Next, 10),
		"$5", last,
	).Replace(moveOffset)
}

// quoteLiteral quotes s as a string constant whatever the session's
// standard_conforming_strings.
func quoteLiteral(s string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, "'", "''").Replace(s) + "'"
}

// moved checks a moveOffset's outcome.
func (cur Cursor) moved(ct pgconn.CommandTag) error {
	if ct.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s/%d is no longer at %d", ErrOffsetsMoved, cur.Topic, cur.Partition, cur.From)
	}
	return nil
}

// Apply writes recs to the ledger and moves cur in one transaction: COPY
// into the session's staging table, INSERT … ON CONFLICT DO NOTHING, then —
// when the target has projections — each projection over the batch's new
// events, the offsets row, commit. An event's effect on every table of the
// target is all or nothing. It returns how many events were new. Every
// record must be decodable.
func Apply(ctx context.Context, pool *pgxpool.Pool, recs []Record, cur Cursor, ps *Projections) (int64, error) {
	data, err := EncodeCopy(recs)
	if err != nil {
		return 0, err
	}
	var inserted int64
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), copyIntoStaging); err != nil {
			return fmt.Errorf("copy into staging: %w", err)
		}
		var b pgx.Batch
		insert := insertFromStaging
		if !ps.empty() {
			insert = insertKeepingNew
			// A rebuild holds this lock exclusively while it recomputes.
			b.Queue(`SELECT pg_advisory_xact_lock_shared(hashtext($1))`, rebuildLock)
		}
		b.Queue(insert).Exec(func(ct pgconn.CommandTag) error {
			inserted = ct.RowsAffected()
			return nil
		})
		if ps.empty() {
			b.Queue(moveOffset, cur.Topic, int32(cur.Partition), cur.From, cur.Next, cur.lastTime()).Exec(cur.moved)
		}
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return fmt.Errorf("insert batch: %w", err)
		}
		if ps.empty() {
			return nil
		}
		if inserted > 0 {
			if _, err := ps.run(ctx, tx, ""); err != nil {
				return err
			}
		}
		ct, err := tx.Exec(ctx, moveOffset, cur.Topic, int32(cur.Partition), cur.From, cur.Next, cur.lastTime())
		if err != nil {
			return err
		}
		return cur.moved(ct)
	})
	return inserted, err
}

// ErrNotAllNew is ApplyNew's answer when the ledger already holds one of the
// events (or the batch holds one twice): nothing was written, and Apply is
// the way to apply the batch.
var ErrNotAllNew = errors.New("not every event of the batch is new")

// ApplyNew is Apply for a target without projections, for the common case
// of a batch of events the ledger has never seen: COPY straight into the
// ledger and the offsets row, in one transaction, without the staging table
// and its INSERT … ON CONFLICT. A duplicate anywhere makes the COPY fail on
// the ledger's key and the whole transaction roll back: ErrNotAllNew.
//
// It costs two round trips where Apply costs four or five: BEGIN, the COPY
// and the offsets row go in one message, then COMMIT (or ROLLBACK when the
// offsets row had moved). The batch is encoded before a session is taken.
func ApplyNew(ctx context.Context, pool *pgxpool.Pool, recs []Record, cur Cursor) error {
	data, err := EncodeCopy(recs)
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A session given back inside a transaction (a failed ROLLBACK) is
	// closed by the pool, never reused.
	defer conn.Release()
	pg := conn.Conn().PgConn()
	ct, err := pg.CopyFrom(ctx, bytes.NewReader(data), "BEGIN; "+copyIntoLedger+"; "+cur.moveStatement())
	if err == nil {
		err = cur.moved(ct)
	}
	if err != nil {
		rollback(pg)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.TableName == "sluice_events" { // unique_violation
			return fmt.Errorf("%w: %s", ErrNotAllNew, pgErr.Message)
		}
		return err
	}
	_, err = pg.Exec(ctx, "COMMIT").ReadAll()
	return err
}

var (
	copyIntoLedger  = CopyStatement("sluice_events")
	copyIntoStaging = CopyStatement("sluice_staging")
)

// rollback ends a failed transaction on pg, if the session is still there,
// within a deadline of its own: the caller's context may be what ended.
func rollback(pg *pgconn.PgConn) {
	if pg.IsClosed() || pg.TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = pg.Exec(ctx, "ROLLBACK").ReadAll()
}

// rebuildLock names the advisory lock a rebuild takes exclusively and every
// apply transaction of a target with projections takes shared.
const rebuildLock = "sluice_projections_rebuild"

// Advance records that everything before cur.Next was dealt with, for a
// tail of dead-lettered records that Apply never saw. Like Apply, it is a
// compare-and-set on cur.From.
func Advance(ctx context.Context, pool *pgxpool.Pool, cur Cursor) error {
	ct, err := pool.Exec(ctx, moveOffset, cur.Topic, int32(cur.Partition), cur.From, cur.Next, cur.lastTime())
	if err != nil {
		return err
	}
	return cur.moved(ct)
}

// Offset is a partition's offsets row.
type Offset struct {
	Next     int64
	RewindID string    // the last rewind applied to the partition
	LastTime time.Time // Kafka timestamp of the record at Next−1; zero when unknown
	Found    bool      // false when the target never applied the partition
}

// Querier is what reading an offsets row needs: a pool, a connection or a
// transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Offsets reads the offsets rows of topic: partition → next offset.
func Offsets(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, topic string) (map[int]int64, error) {
	rows, err := q.Query(ctx, `SELECT partition, next_offset FROM sluice_offsets WHERE topic = $1`, topic)
	if err != nil {
		return nil, fmt.Errorf("read sluice_offsets: %w", err)
	}
	out := map[int]int64{}
	var p int32
	var next int64
	_, err = pgx.ForEachRow(rows, []any{&p, &next}, func() error { out[int(p)] = next; return nil })
	if err != nil {
		return nil, fmt.Errorf("read sluice_offsets: %w", err)
	}
	return out, nil
}

// LoadOffset reads a partition's offsets row.
func LoadOffset(ctx context.Context, q Querier, topic string, partition int) (Offset, error) {
	var o Offset
	var rewind *string
	var last *time.Time
	err := q.QueryRow(ctx, `SELECT next_offset, rewind_id, last_record_time FROM sluice_offsets WHERE topic = $1 AND partition = $2`,
		topic, int32(partition)).Scan(&o.Next, &rewind, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, nil
	}
	if err != nil {
		return o, err
	}
	o.Found = true
	if rewind != nil {
		o.RewindID = *rewind
	}
	if last != nil {
		o.LastTime = *last
	}
	return o, nil
}

// moveOffset moves a partition to an operator's offset — back for a
// rewind (LEAST), forward for a skip (GREATEST) — and records the command's
// id in the same statement. Command ids sort in the order they were issued:
// a partition applies each command once, and never one older than the last
// it applied (a replica re-reading old control records cannot move it
// back). A rewind past the target's position, or a skip behind it, leaves
// the position as it is. The log fingerprint is forgotten when the position
// changes.
const moveCommand = `INSERT INTO sluice_offsets (topic, partition, next_offset, rewind_id, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = %[1]s(sluice_offsets.next_offset, EXCLUDED.next_offset),
	last_record_time = CASE WHEN %[1]s(sluice_offsets.next_offset, EXCLUDED.next_offset) = sluice_offsets.next_offset
		THEN sluice_offsets.last_record_time END,
	rewind_id = EXCLUDED.rewind_id, updated_at = EXCLUDED.updated_at
WHERE sluice_offsets.rewind_id IS NULL OR sluice_offsets.rewind_id < EXCLUDED.rewind_id
RETURNING next_offset`

var (
	rewindOffset = fmt.Sprintf(moveCommand, "LEAST")
	skipOffset   = fmt.Sprintf(moveCommand, "GREATEST")
)

// RecordMove moves a partition for the operator's command id: back to
// offset (a rewind) or, with forward, ahead to it (a skip), unless that
// command (or a later one) was already applied to it. It returns the
// partition's position after it, and whether it recorded the command. For
// a partition the target never applied, offset is where it starts: the
// caller caps it at the partition's current position.
func RecordMove(ctx context.Context, pool *pgxpool.Pool, topic string, partition int, offset int64, id string, forward bool) (int64, bool, error) {
	sql := rewindOffset
	if forward {
		sql = skipOffset
	}
	var next int64
	err := pool.QueryRow(ctx, sql, topic, int32(partition), offset, id).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) { // applied before: the position is the target's
		o, err := LoadOffset(ctx, pool, topic, partition)
		return o.Next, false, err
	}
	return next, err == nil, err
}
