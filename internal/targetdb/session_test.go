package targetdb

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testenv"
)

// TestAPoolNeverHasMoreBackendsThanItsBound: closing idle sessions (as an
// opening breaker or a pause does) and opening new ones at once must never
// leave more backends on the server than the pool allows. Backends that
// drop many temporary tables as they exit take a while to go; the pool
// must wait for them before it opens the next sessions.
func TestAPoolNeverHasMoreBackendsThanItsBound(t *testing.T) {
	dsn := testenv.Database(t)
	ctx := context.Background()
	app := "sluice-bound-" + testenv.ID()
	pool, err := NewPool(dsn, Session{ApplicationName: app}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	probe := testenv.Conn(t, dsn)

	var most atomic.Int64
	stop := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			var n int64
			if err := probe.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n); err != nil {
				t.Error(err)
				return
			}
			if n > most.Load() {
				most.Store(n)
			}
		}
	})
	var temp strings.Builder
	for i := range 400 {
		fmt.Fprintf(&temp, "CREATE TEMP TABLE slow_exit_%d (a int); ", i)
	}
	for round := range 3 {
		a, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Exec(ctx, temp.String()); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if _, err := b.Exec(ctx, temp.String()); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		a.Release()
		b.Release()
		CloseIdle(pool)
		var opening sync.WaitGroup
		for range 2 {
			opening.Go(func() {
				c, err := pool.Acquire(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				time.Sleep(50 * time.Millisecond)
				c.Release()
			})
		}
		opening.Wait()
	}
	close(stop)
	sampling.Wait()
	if n := most.Load(); n > 2 {
		t.Fatalf("the server had %d backends of a pool of 2", n)
	} else if n < 2 {
		t.Fatalf("saw at most %d backends: the sampler saw nothing", n)
	}
}
