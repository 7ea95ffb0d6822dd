package consumer

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/control"
	"github.com/sluicehq/sluice/internal/testenv"
)

// holdOffsets opens a session of the application role that locks every
// offsets row (the rows each batch updates) in a transaction. A busy one
// then runs a 5-second query and commits; an idle one does nothing for 8
// seconds, then rolls back. It returns the session's pid and the outcome of
// what it ran after taking the locks: an error when it was ended.
func holdOffsets(t *testing.T, appDSN string, busy bool) (int, <-chan error) {
	t.Helper()
	cc, err := pgx.ParseConfig(appDSN)
	if err != nil {
		t.Fatal(err)
	}
	cc.RuntimeParams["application_name"] = "billing-worker"
	conn, err := pgx.ConnectConfig(context.Background(), cc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), `BEGIN; SELECT * FROM sluice_offsets FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	result := make(chan error, 1)
	go func() {
		defer conn.Close(context.Background())
		if busy {
			_, err := conn.Exec(context.Background(), "SELECT pg_sleep(5); COMMIT")
			result <- err
			return
		}
		time.Sleep(8 * time.Second)
		_, err := conn.Exec(context.Background(), "ROLLBACK")
		result <- err
	}()
	return int(conn.PgConn().PID()), result
}

func (ta *testApplier) blockerActions() []control.BlockerAction {
	_, _, actions := ta.blockers.describe()
	return actions
}

// TestTheBlockerPolicy replays the report's 14:24 against one worker: a
// session idle in its transaction holds the offsets rows every batch
// updates, and the target stalls. In terminate mode the policy ends it after
// its bound and the worker catches up; in report mode it says so and ends
// nothing; a session that is busy (a long query holding the same locks) is
// never ended.
func TestTheBlockerPolicy(t *testing.T) {
	const bound = 2 * time.Second
	for _, c := range []struct {
		name       string
		terminate  bool
		busy       bool // the holding session runs a query rather than sit idle
		wantAction string
		wantEnded  bool
	}{
		{"terminate mode ends the idle transaction", true, false, "ended", true},
		{"report mode ends nothing", false, false, "reported", false},
		{"a busy session is never ended", true, true, "spared", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			ta := newTestApplier(t, func(cfg *Config) {
				cfg.Blockers = BlockerPolicy{After: bound, Terminate: c.terminate}
				cfg.Registerer = reg
			})
			ta.publish(10, 0)
			ta.startWorker()
			eventually(t, 10*time.Second, "the first events applied (the offsets row exists)", func() bool { return ta.nextOffset() == 10 })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go ta.blockers.run(ctx)

			pid, result := holdOffsets(t, testenv.AsApplication(t, ta.dsn), c.busy)
			began := time.Now()
			ta.publish(10, 10)

			eventually(t, bound+8*time.Second, "the policy to deal with the blocker", func() bool { return len(ta.blockerActions()) > 0 })
			dealt := time.Since(began)
			got := ta.blockerActions()[0]
			if got.Action != c.wantAction || got.PID != pid || got.User != "sluice_app" || !strings.Contains(got.Locks, "sluice_offsets") {
				t.Fatalf("action %+v, want %s of pid %d (sluice_app, holding sluice_offsets)", got, c.wantAction, pid)
			}
			if dealt < bound {
				t.Fatalf("dealt with after %v, before the bound of %v", dealt, bound)
			}
			if n := testutil.ToFloat64(ta.m.blockers.WithLabelValues(c.wantAction)); n != 1 {
				t.Fatalf("sluice_blocking_sessions_total{action=%s} = %v, want 1", c.wantAction, n)
			}
			if c.wantEnded {
				t.Logf("bound %v: blocker ended %v after the lock was taken, worker caught up %v after it", bound, dealt, time.Since(began))
			}
			select {
			case err := <-result:
				if c.wantEnded != (err != nil) {
					t.Fatalf("the holding session: %v; want ended = %v", err, c.wantEnded)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the holding session neither finished nor was ended")
			}
			// Ended, the worker catches up at once; otherwise once the holder finishes.
			eventually(t, 15*time.Second, "the worker to catch up once the locks are gone", func() bool { return ta.nextOffset() == 20 })
			if n := len(ta.blockerActions()); n != 1 {
				t.Fatalf("%d actions, want one: each transaction is dealt with once", n)
			}
		})
	}
}

// TestTheBlockerPolicyWarnsWhenItsRoleCannotAct: an applier whose role
// lacks pg_read_all_stats and pg_signal_backend says so, with the GRANT that
// fixes it, in its status.
func TestTheBlockerPolicyWarnsWhenItsRoleCannotAct(t *testing.T) {
	ta := newTestApplier(t, func(cfg *Config) {
		cfg.DSN = testenv.AsApplication(t, cfg.DSN)
		cfg.Blockers = BlockerPolicy{After: time.Second, Terminate: true}
	})
	conn := ta.blockers.connect(context.Background())
	if conn == nil {
		t.Fatal("the watch could not connect")
	}
	defer conn.Close(context.Background())
	st := ta.report.status()
	if !strings.Contains(st.BlockerPolicyCannotAct, "role sluice_app lacks pg_read_all_stats and pg_signal_backend") ||
		!strings.Contains(st.BlockerPolicyCannotAct, "GRANT pg_read_all_stats, pg_signal_backend TO sluice_app") {
		t.Fatalf("status blocker_policy_cannot_act = %q, want the missing roles and the GRANT", st.BlockerPolicyCannotAct)
	}
	if st.BlockerPolicy == "" || strings.Contains(st.BlockerPolicy, "lacks") {
		t.Fatalf("status blocker_policy = %q, want the policy alone", st.BlockerPolicy)
	}
}
