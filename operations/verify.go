package operations

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/internal/targetdb"
)

// VerifyRequest names the two targets compared and the window.
type VerifyRequest struct {
	A, B string // target names
	// From and To bound the events' "time"; zero values mean unbounded on
	// that side. Events without a time are compared as one more bucket when
	// both are unbounded.
	From, To time.Time
	// Bucket is the width of a bucket. Default 1 minute.
	Bucket time.Duration
	// Keys is how many differing keys to name, taken from the differing
	// buckets in order; 0 names none.
	Keys int
	// UpToWatermark compares only the events both targets have passed: per
	// partition, those before the lower of the two targets' positions. A
	// target still catching up then compares equal on what it has.
	UpToWatermark bool
}

// Bucket is one time bucket of both targets.
type Bucket struct {
	Start  time.Time `json:"start"` // zero for the events without a time
	CountA int64     `json:"count_a"`
	CountB int64     `json:"count_b"`
	SumA   string    `json:"checksum_a"`
	SumB   string    `json:"checksum_b"`
}

// Same reports whether both targets hold the same events in the bucket.
func (b Bucket) Same() bool { return b.CountA == b.CountB && b.SumA == b.SumB }

// KeyDiff is one event the two targets disagree about.
type KeyDiff struct {
	Source string `json:"source"`
	ID     string `json:"id"`
	// Diff is "only in A", "only in B" or "content differs".
	Diff string `json:"diff"`
}

// VerifyResult is the comparison.
type VerifyResult struct {
	Buckets   []Bucket  `json:"buckets"`
	Events    int64     `json:"events_a"`
	FirstDiff *Bucket   `json:"first_difference,omitempty"`
	Differing []Bucket  `json:"differing"`
	Keys      []KeyDiff `json:"differing_keys,omitempty"`
	// Watermark is, with UpToWatermark, the position per partition below
	// which the events were compared.
	Watermark map[int]int64 `json:"watermark,omitempty"`
}

// eventDigest is the hash of an applied event's whole content: every
// envelope column (time as an epoch, so that the session's time zone does
// not matter; jsonb in its canonical text), not only its key. Where in the
// log the event was applied from (partition, offset) and when are not part
// of it: they may differ between targets that hold the same facts.
const eventDigest = `md5(row(source, id, type, subject, extract(epoch FROM time), datacontenttype, dataschema,
	data, data_base64, extensions)::text)`

// inWindow selects the events of the window: $1 from (or NULL), $2 to (or
// NULL), and the events without a time when $3; and, when $5 (partitions)
// and $6 (positions) are not NULL, only those before the watermark.
var inWindow = `((time >= coalesce($1, '-infinity'::timestamptz) AND time < coalesce($2, 'infinity'::timestamptz))
	OR (time IS NULL AND $3)) AND ` + belowWatermark(5, 6)

// belowWatermark selects the events before the watermark given as
// parameters $parts (partitions) and $marks (positions), when not NULL.
func belowWatermark(parts, marks int) string {
	return fmt.Sprintf(`($%[1]d::int[] IS NULL OR kafka_offset < coalesce(
	(SELECT w.mark FROM unnest($%[1]d::int[], $%[2]d::bigint[]) AS w(part, mark) WHERE w.part = kafka_partition), 0))`, parts, marks)
}

// The checksum is the sum, as a number, of a hash of each event: the same
// set of events gives the same sum in any order.
var verifyBuckets = `
SELECT CASE WHEN time IS NULL THEN NULL ELSE date_bin(make_interval(secs => $4), time, '2000-01-01') END AS bucket,
       count(*),
       coalesce(sum(('x' || substr(` + eventDigest + `, 1, 15))::bit(60)::bigint::numeric), 0)::text
FROM sluice_events
WHERE ` + inWindow + `
GROUP BY 1`

// bucketKeys lists the events of one bucket ($1 start or NULL for the
// events without a time, $2 its end) with their digests.
var bucketKeys = `
SELECT source, id, ` + eventDigest + `
FROM sluice_events
WHERE (($1::timestamptz IS NULL AND time IS NULL) OR (time >= $1 AND time < $2)) AND ` + belowWatermark(3, 4)

// verifySession may scan a whole ledger, but never waits long on a lock.
var verifySession = targetdb.Session{ApplicationName: "sluice-ctl", LockTimeout: 2 * time.Second, StatementTimeout: 2 * time.Minute}

type side struct {
	count int64
	sum   string
}

// Verify compares two targets' events, bucket by bucket, over every time
// unless a window is given, and names the differing buckets (and up to
// c.Keys differing keys).
func (o *Ops) Verify(ctx context.Context, c VerifyRequest) (VerifyResult, error) {
	ta, err := o.Target(c.A)
	if err != nil {
		return VerifyResult{}, err
	}
	tb, err := o.Target(c.B)
	if err != nil {
		return VerifyResult{}, err
	}
	if c.Bucket <= 0 {
		c.Bucket = time.Minute
	}
	connA, err := targetdb.Connect(ctx, ta.DSN, verifySession)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("target %s: %w", ta.Name, err)
	}
	defer connA.Close(context.WithoutCancel(ctx))
	connB, err := targetdb.Connect(ctx, tb.DSN, verifySession)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("target %s: %w", tb.Name, err)
	}
	defer connB.Close(context.WithoutCancel(ctx))

	var mark watermark
	if c.UpToWatermark {
		if mark, err = commonWatermark(ctx, connA, connB, o.topic); err != nil {
			return VerifyResult{}, err
		}
	}
	a, err := readBuckets(ctx, connA, c, mark)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("target %s: %w", ta.Name, err)
	}
	b, err := readBuckets(ctx, connB, c, mark)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("target %s: %w", tb.Name, err)
	}
	res := compareBuckets(a, b)
	res.Watermark = mark.positions()
	for _, d := range res.Differing {
		if len(res.Keys) >= c.Keys {
			break
		}
		keys, err := differingKeys(ctx, connA, connB, d.Start, c.Bucket, mark)
		if err != nil {
			return res, err
		}
		res.Keys = append(res.Keys, keys[:min(len(keys), c.Keys-len(res.Keys))]...)
	}
	return res, nil
}

func readBuckets(ctx context.Context, conn *pgx.Conn, c VerifyRequest, mark watermark) (map[time.Time]side, error) {
	var from, to *time.Time
	if !c.From.IsZero() {
		from = &c.From
	}
	if !c.To.IsZero() {
		to = &c.To
	}
	rows, err := conn.Query(ctx, verifyBuckets, from, to, from == nil && to == nil, c.Bucket.Seconds(), mark.parts, mark.marks)
	if err != nil {
		return nil, err
	}
	out := map[time.Time]side{}
	var bucket *time.Time
	var s side
	_, err = pgx.ForEachRow(rows, []any{&bucket, &s.count, &s.sum}, func() error {
		var key time.Time
		if bucket != nil {
			key = bucket.UTC()
		}
		out[key] = s
		return nil
	})
	return out, err
}

func compareBuckets(a, b map[time.Time]side) VerifyResult {
	keys := map[time.Time]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	res := VerifyResult{Differing: []Bucket{}}
	for k := range keys {
		res.Buckets = append(res.Buckets, Bucket{Start: k, CountA: a[k].count, CountB: b[k].count, SumA: a[k].sum, SumB: b[k].sum})
		res.Events += a[k].count
	}
	sort.Slice(res.Buckets, func(i, j int) bool { return res.Buckets[i].Start.Before(res.Buckets[j].Start) })
	for i := range res.Buckets {
		if !res.Buckets[i].Same() {
			res.Differing = append(res.Differing, res.Buckets[i])
		}
	}
	if len(res.Differing) > 0 {
		res.FirstDiff = &res.Differing[0]
	}
	return res
}

// differingKeys compares one bucket event by event.
func differingKeys(ctx context.Context, connA, connB *pgx.Conn, start time.Time, width time.Duration, mark watermark) ([]KeyDiff, error) {
	read := func(conn *pgx.Conn) (map[[2]string]string, error) {
		var from *time.Time
		if !start.IsZero() {
			from = &start
		}
		rows, err := conn.Query(ctx, bucketKeys, from, start.Add(width), mark.parts, mark.marks)
		if err != nil {
			return nil, err
		}
		out := map[[2]string]string{}
		var source, id, digest string
		_, err = pgx.ForEachRow(rows, []any{&source, &id, &digest}, func() error {
			out[[2]string{source, id}] = digest
			return nil
		})
		return out, err
	}
	a, err := read(connA)
	if err != nil {
		return nil, err
	}
	b, err := read(connB)
	if err != nil {
		return nil, err
	}
	var out []KeyDiff
	for k, da := range a {
		switch db, ok := b[k]; {
		case !ok:
			out = append(out, KeyDiff{Source: k[0], ID: k[1], Diff: "only in A"})
		case da != db:
			out = append(out, KeyDiff{Source: k[0], ID: k[1], Diff: "content differs"})
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, KeyDiff{Source: k[0], ID: k[1], Diff: "only in B"})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Source < out[j].Source || (out[i].Source == out[j].Source && out[i].ID < out[j].ID)
	})
	return out, nil
}

// watermark is, per partition, a position both targets have passed; nil
// slices compare everything.
type watermark struct {
	parts []int32
	marks []int64
}

func (w watermark) positions() map[int]int64 {
	if w.parts == nil {
		return nil
	}
	out := map[int]int64{}
	for i, p := range w.parts {
		out[int(p)] = w.marks[i]
	}
	return out
}

// commonWatermark is the lower of the two targets' positions per partition
// (0 for a partition one of them never applied).
func commonWatermark(ctx context.Context, connA, connB *pgx.Conn, topic string) (watermark, error) {
	a, err := targetdb.Offsets(ctx, connA, topic)
	if err != nil {
		return watermark{}, err
	}
	b, err := targetdb.Offsets(ctx, connB, topic)
	if err != nil {
		return watermark{}, err
	}
	w := watermark{parts: []int32{}, marks: []int64{}}
	for p, na := range a {
		w.parts = append(w.parts, int32(p))
		w.marks = append(w.marks, min(na, b[p]))
	}
	return w, nil
}

// replaySession replays a whole ledger through the projections: long
// statements, short lock waits.
var replaySession = targetdb.Session{ApplicationName: "sluice-ctl", LockTimeout: 2 * time.Second,
	StatementTimeout: 10 * time.Minute, IdleInTransactionTimeout: time.Minute}

// ReplayCheck recomputes the target's projections from its own ledger beside
// the live tables and compares them row by row; see targetdb.ReplayCheck. A
// target without projections has nothing to check.
func (o *Ops) ReplayCheck(ctx context.Context, name string, examples int, progress func(targetdb.RebuildProgress)) (targetdb.ReplayResult, error) {
	t, err := o.Target(name)
	if err != nil {
		return targetdb.ReplayResult{}, err
	}
	conn, err := targetdb.Connect(ctx, t.DSN, replaySession)
	if err != nil {
		return targetdb.ReplayResult{}, fmt.Errorf("target %s: %w", t.Name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res, err := targetdb.ReplayCheck(ctx, conn, t.Projections, examples, 5000, progress)
	if err != nil {
		return res, fmt.Errorf("replay check of %s: %w", t.Name, err)
	}
	return res, nil
}
