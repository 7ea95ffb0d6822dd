package operations

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/internal/targetdb"
)

// ErrNoFacts is returned by CompareFacts when a target declares no facts
// query: sluice cannot know what its tables mean.
var ErrNoFacts = errors.New("no facts query")

// FactsDiff is one fact the two targets disagree about.
type FactsDiff struct {
	Key string `json:"key"`
	A   string `json:"a,omitempty"` // the row in A, empty when A lacks it
	B   string `json:"b,omitempty"`
}

// FactsResult compares two targets' facts.
type FactsResult struct {
	RowsA  int64 `json:"rows_a"`
	RowsB  int64 `json:"rows_b"`
	OnlyA  int64 `json:"only_a"`
	OnlyB  int64 `json:"only_b"`
	Differ int64 `json:"differ"`
	// Keys are the first differing facts, up to the number asked for.
	Keys []FactsDiff `json:"differing_keys,omitempty"`
}

// Same reports two targets holding the same facts.
func (r FactsResult) Same() bool { return r.OnlyA == 0 && r.OnlyB == 0 && r.Differ == 0 }

// Summary says in one line what the comparison found.
func (r FactsResult) Summary(a, b string) string {
	if r.Same() {
		return fmt.Sprintf("%s and %s hold the same %d facts", a, b, r.RowsA)
	}
	s := fmt.Sprintf("%d facts differ, %d only in %s, %d only in %s", r.Differ, r.OnlyA, a, r.OnlyB, b)
	for _, k := range r.Keys {
		s += fmt.Sprintf("; %s: %s has %q, %s has %q", k.Key, a, k.A, b, k.B)
	}
	return s
}

// CompareFacts runs both targets' facts queries and compares their rows by
// content, key by key, reading both at once in key order: memory stays
// bounded whatever the tables hold.
func (o *Ops) CompareFacts(ctx context.Context, a, b string, keys int) (FactsResult, error) {
	var res FactsResult
	ta, err := o.Target(a)
	if err != nil {
		return res, err
	}
	tb, err := o.Target(b)
	if err != nil {
		return res, err
	}
	for _, t := range []Target{ta, tb} {
		if t.Facts == "" {
			return res, fmt.Errorf("%w: target %s declares none (facts: in its configuration)", ErrNoFacts, t.Name)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	streams := [2]chan targetdb.Fact{make(chan targetdb.Fact, 256), make(chan targetdb.Fact, 256)}
	errs := make(chan error, 2)
	for i, t := range []Target{ta, tb} {
		go func() {
			defer close(streams[i])
			conn, err := targetdb.Connect(ctx, t.DSN, replaySession)
			if err != nil {
				errs <- fmt.Errorf("target %s: %w", t.Name, err)
				return
			}
			defer conn.Close(context.WithoutCancel(ctx))
			err = targetdb.Facts(ctx, conn, t.Facts, func(f targetdb.Fact) error {
				select {
				case streams[i] <- f:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			if err != nil {
				errs <- fmt.Errorf("facts of %s: %w", t.Name, err)
			}
		}()
	}
	next := func(i int) (targetdb.Fact, bool) {
		f, ok := <-streams[i]
		return f, ok
	}
	fa, okA := next(0)
	fb, okB := next(1)
	note := func(d FactsDiff) {
		if len(res.Keys) < keys {
			res.Keys = append(res.Keys, d)
		}
	}
	for okA || okB {
		switch {
		case okA && (!okB || fa.Key < fb.Key):
			res.RowsA++
			res.OnlyA++
			note(FactsDiff{Key: fa.Key, A: fa.Row})
			fa, okA = next(0)
		case okB && (!okA || fb.Key < fa.Key):
			res.RowsB++
			res.OnlyB++
			note(FactsDiff{Key: fb.Key, B: fb.Row})
			fb, okB = next(1)
		default:
			res.RowsA++
			res.RowsB++
			if fa.Row != fb.Row {
				res.Differ++
				note(FactsDiff{Key: fa.Key, A: fa.Row, B: fb.Row})
			}
			fa, okA = next(0)
			fb, okB = next(1)
		}
	}
	select {
	case err := <-errs:
		return res, err
	default:
	}
	return res, ctx.Err()
}
