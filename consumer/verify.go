package consumer

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// VerifyConfig names the two targets compared and the window.
type VerifyConfig struct {
	A, B       string // target names, for messages
	DSNA, DSNB string
	// From and To bound the events' "time"; zero values mean unbounded. Rows
	// without a time are compared as one more bucket when the window is
	// unbounded.
	From, To time.Time
	// Bucket is the width of a bucket. Default 1 minute.
	Bucket time.Duration
}

// Bucket is one time bucket of both targets.
type Bucket struct {
	Start  time.Time `json:"start"` // zero for the rows without a time
	CountA int64     `json:"count_a"`
	CountB int64     `json:"count_b"`
	SumA   string    `json:"checksum_a"`
	SumB   string    `json:"checksum_b"`
}

// Same reports whether both targets hold the same events in the bucket.
func (b Bucket) Same() bool { return b.CountA == b.CountB && b.SumA == b.SumB }

// VerifyResult is the comparison.
type VerifyResult struct {
	Buckets   []Bucket `json:"buckets"`
	Events    int64    `json:"events_a"`
	FirstDiff *Bucket  `json:"first_difference,omitempty"`
}

// The checksum is the sum, as a number, of a hash of each (source, id): the
// same set gives the same sum in any order.
const verifyBuckets = `
SELECT CASE WHEN time IS NULL THEN NULL ELSE date_bin(make_interval(secs => $3), time, $1) END AS bucket,
       count(*),
       coalesce(sum(('x' || substr(md5(source || chr(31) || id), 1, 15))::bit(60)::bigint::numeric), 0)::text
FROM sluice_events
WHERE (time >= $1 AND time < $2) OR (time IS NULL AND $4)
GROUP BY 1`

// Verify compares two targets' events, bucket by bucket.
func Verify(ctx context.Context, c VerifyConfig) (VerifyResult, error) {
	if c.Bucket <= 0 {
		c.Bucket = time.Minute
	}
	untimed := c.From.IsZero() && c.To.IsZero()
	if c.From.IsZero() {
		c.From = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if c.To.IsZero() {
		c.To = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	type side struct {
		count int64
		sum   string
	}
	read := func(target, dsn string) (map[time.Time]side, error) {
		cc, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, fmt.Errorf("%w: targets[%s].dsn cannot be parsed", ErrInvalidConfig, target)
		}
		cc.RuntimeParams["application_name"] = "sluice-ctl"
		cc.RuntimeParams["lock_timeout"] = "2000"
		cc.RuntimeParams["statement_timeout"] = "120000"
		conn, err := pgx.ConnectConfig(ctx, cc)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", target, err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		rows, err := conn.Query(ctx, verifyBuckets, c.From, c.To, c.Bucket.Seconds(), untimed)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", target, err)
		}
		out := map[time.Time]side{}
		for rows.Next() {
			var b *time.Time
			var s side
			if err := rows.Scan(&b, &s.count, &s.sum); err != nil {
				return nil, err
			}
			var key time.Time
			if b != nil {
				key = b.UTC()
			}
			out[key] = s
		}
		return out, rows.Err()
	}
	a, err := read(c.A, c.DSNA)
	if err != nil {
		return VerifyResult{}, err
	}
	b, err := read(c.B, c.DSNB)
	if err != nil {
		return VerifyResult{}, err
	}
	keys := map[time.Time]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var res VerifyResult
	for k := range keys {
		res.Buckets = append(res.Buckets, Bucket{Start: k, CountA: a[k].count, CountB: b[k].count, SumA: a[k].sum, SumB: b[k].sum})
		res.Events += a[k].count
	}
	sortBuckets(res.Buckets)
	for i := range res.Buckets {
		if !res.Buckets[i].Same() {
			res.FirstDiff = &res.Buckets[i]
			break
		}
	}
	return res, nil
}

func sortBuckets(bs []Bucket) {
	for i := 1; i < len(bs); i++ {
		for j := i; j > 0 && bs[j].Start.Before(bs[j-1].Start); j-- {
			bs[j], bs[j-1] = bs[j-1], bs[j]
		}
	}
}
