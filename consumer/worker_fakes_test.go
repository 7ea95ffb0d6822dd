package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/targetdb"
)

// The in-memory stand-ins for a partition worker's dependencies, after
// franz-go's kfake: enough of Kafka and of the target to drive every
// transition of the worker without services. Run inside a synctest bubble,
// their waits (and the worker's) take no real time.

// memLog is an events topic in memory: per partition, the messages from
// its log start. Safe for concurrent use.
type memLog struct {
	topic string
	mu    sync.Mutex
	parts map[int]*memPartition
	grew  chan struct{} // closed (and replaced) on every append
	last  time.Time     // the last timestamp given: timestamps only grow
}

type memPartition struct {
	start int64 // offset of msgs[0]
	msgs  []kafka.Message
}

func newMemLog(topic string) *memLog {
	return &memLog{topic: topic, parts: map[int]*memPartition{0: {}}, grew: make(chan struct{})}
}

// append adds values to partition's log, returning the first offset.
func (l *memLog) append(partition int, values ...[]byte) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.parts[partition]
	first := p.start + int64(len(p.msgs))
	for i, v := range values {
		// Kafka's timestamps are milliseconds; records of one instant of a
		// bubble's clock still get distinct ones, as a recreated log's do.
		now, next := time.Now().Truncate(time.Millisecond), l.last.Add(time.Millisecond)
		if now.Before(next) {
			now = next
		}
		l.last = now
		p.msgs = append(p.msgs, kafka.Message{Topic: l.topic, Partition: partition, Offset: first + int64(i),
			Key: []byte("k"), Value: v, Time: l.last})
	}
	close(l.grew)
	l.grew = make(chan struct{})
	return first
}

// recreate empties every partition, as deleting the topic and creating it
// again does.
func (l *memLog) recreate() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.parts {
		l.parts[id] = &memPartition{}
	}
}

func (l *memLog) newFetcher(partition int, _ *slog.Logger) fetcher {
	return &memFetcher{log: l, partition: partition}
}

func (l *memLog) bounds(ctx context.Context) (map[int]int64, map[int]int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	starts, ends := map[int]int64{}, map[int]int64{}
	for id, p := range l.parts {
		starts[id], ends[id] = p.start, p.start+int64(len(p.msgs))
	}
	return starts, ends, ctx.Err()
}

func (l *memLog) recordTime(ctx context.Context, partition int, offset int64) (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.parts[partition]
	if offset < p.start || offset >= p.start+int64(len(p.msgs)) {
		return time.Time{}, fmt.Errorf("offset %d out of range", offset)
	}
	return p.msgs[offset-p.start].Time, ctx.Err()
}

// memFetcher reads a memLog partition from its offset, waiting for records
// past the end as a Kafka reader does.
type memFetcher struct {
	log       *memLog
	partition int
	pos       int64
}

func (f *memFetcher) SetOffset(offset int64) error { f.pos = offset; return nil }
func (f *memFetcher) Close() error                 { return nil }

func (f *memFetcher) FetchMessage(ctx context.Context) (kafka.Message, error) {
	for {
		f.log.mu.Lock()
		p := f.log.parts[f.partition]
		end := p.start + int64(len(p.msgs))
		f.pos = max(f.pos, p.start) // out of range: from the log start
		if f.pos < end {
			m := p.msgs[f.pos-p.start]
			m.HighWaterMark = end
			f.pos++
			f.log.mu.Unlock()
			return m, nil
		}
		grew := f.log.grew
		f.log.mu.Unlock()
		select {
		case <-ctx.Done():
			return kafka.Message{}, ctx.Err()
		case <-grew:
		}
	}
}

// memStore is a target in memory: offsets rows and the ledger's event ids,
// with the same compare-and-set and once-per-command rules as targetdb's
// SQL. It can be told to fail at given offsets, retryably or permanently,
// and to take time per record against a statement timeout. Safe for
// concurrent use.
type memStore struct {
	mu     sync.Mutex
	rows   map[int]targetdb.Offset
	ledger map[string]bool
	fail   map[int64]error
	// perRecord is how long applying one record takes; a transaction that
	// would take statementTimeout or more is cancelled then (57014).
	perRecord, statementTimeout time.Duration
	sessions                    int // transactions under way
}

var (
	errLockTimeout      = &pgconn.PgError{Code: "55P03", Message: "lock not available"}
	errCheckViolation   = &pgconn.PgError{Code: "23514", Message: "new row violates check constraint"}
	errStatementTimeout = &pgconn.PgError{Code: "57014", Message: "canceling statement due to statement timeout"}
)

func newMemStore(statementTimeout time.Duration) *memStore {
	return &memStore{rows: map[int]targetdb.Offset{}, ledger: map[string]bool{}, fail: map[int64]error{},
		statementTimeout: statementTimeout}
}

// failAt makes every transaction holding the record at offset fail with err.
func (s *memStore) failAt(err error, offsets ...int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range offsets {
		s.fail[o] = err
	}
}

// heal forgets the retryable failures: the database works again.
func (s *memStore) heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for o, err := range s.fail {
		if targetdb.Classify(err) == targetdb.Retryable {
			delete(s.fail, o)
		}
	}
}

func (s *memStore) load(ctx context.Context, partition int) (targetdb.Offset, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rows[partition], ctx.Err()
}

func (s *memStore) apply(ctx context.Context, recs []targetdb.Record, cur targetdb.Cursor, expectNew *bool) (int64, error) {
	s.mu.Lock()
	s.sessions++
	took, timeout := s.perRecord*time.Duration(len(recs)), s.statementTimeout
	s.mu.Unlock()
	defer func() { s.mu.Lock(); s.sessions--; s.mu.Unlock() }()
	if took >= timeout && took > 0 {
		if !sleep(ctx, timeout) {
			return 0, ctx.Err()
		}
		return 0, errStatementTimeout
	}
	if took > 0 && !sleep(ctx, took) {
		return 0, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		if err := s.fail[r.Msg.Offset]; err != nil {
			return 0, err // the transaction rolls back: nothing written
		}
	}
	if err := s.moved(cur); err != nil {
		return 0, err
	}
	var inserted int64
	seen := map[string]bool{}
	for _, r := range recs {
		if !s.ledger[r.Event.ID] && !seen[r.Event.ID] {
			inserted++
		}
		seen[r.Event.ID] = true
	}
	if expectNew != nil {
		*expectNew = inserted == int64(len(recs))
	}
	for id := range seen {
		s.ledger[id] = true
	}
	s.setRow(cur)
	return inserted, nil
}

// moved is the compare-and-set of targetdb's cursor.
func (s *memStore) moved(cur targetdb.Cursor) error {
	if row, ok := s.rows[cur.Partition]; ok && row.Next != cur.From {
		return fmt.Errorf("%w: %s/%d is no longer at %d", targetdb.ErrOffsetsMoved, cur.Topic, cur.Partition, cur.From)
	}
	return nil
}

func (s *memStore) setRow(cur targetdb.Cursor) {
	row := s.rows[cur.Partition]
	row.Next, row.LastTime, row.Found = cur.Next, cur.LastTime, true
	s.rows[cur.Partition] = row
}

func (s *memStore) advance(ctx context.Context, cur targetdb.Cursor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.moved(cur); err != nil {
		return err
	}
	s.setRow(cur)
	return ctx.Err()
}

// recordMove is targetdb.RecordMove: once per id, never an older id, a
// rewind only back and a skip only forward.
func (s *memStore) recordMove(ctx context.Context, partition int, offset int64, id string, forward bool) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	row, ok := s.rows[partition]
	if ok && row.RewindID != "" && row.RewindID >= id {
		return row.Next, false, ctx.Err()
	}
	next := offset
	if ok && (forward && row.Next > offset || !forward && row.Next < offset) {
		next = row.Next
	}
	if !ok || next != row.Next {
		row.LastTime = time.Time{}
	}
	row.Next, row.RewindID, row.Found = next, id, true
	s.rows[partition] = row
	return next, true, ctx.Err()
}

func (s *memStore) events() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ledger)
}

func (s *memStore) inTransaction() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// memDLQ keeps dead letters in memory.
type memDLQ struct {
	mu      sync.Mutex
	offsets []int64
}

func (q *memDLQ) deadLetter(ctx context.Context, r targetdb.Record, _ error) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.offsets = append(q.offsets, r.Msg.Offset)
	return ctx.Err()
}

// nopStatus stands in for the reporter: a worker's status is not the
// subject of these tests.
type nopStatus struct{}

func (nopStatus) changed()     {}
func (nopStatus) succeeded()   {}
func (nopStatus) failed(error) {}
