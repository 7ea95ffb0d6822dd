package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/schema"
)

// seedIngest is the design the incident report describes, kept in test code
// only, to be measured against sluice: the request path double-writes every
// event to cluster A and cluster B, with no timeouts anywhere, and with the
// bug the report found — when the write to A fails to commit, the handler
// returns without rolling back B's transaction, which then sits open holding
// its row locks.
type seedIngest struct {
	a, b *pgxpool.Pool
}

const seedInsert = `INSERT INTO sluice_events (source, id, type, subject, data, kafka_partition, kafka_offset)
VALUES ($1, $2, $3, $4, $5, -1, -1) ON CONFLICT (source, id) DO NOTHING`

func (s *seedIngest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	events, faults, err := schema.DecodeRequest(schema.MediaTypeJSON, body, 0)
	if err != nil || len(faults) > 0 {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	ctx := context.Background() // no deadline: the design had none
	txB, err := s.b.Begin(ctx)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	for _, ev := range events {
		if _, err := txB.Exec(ctx, seedInsert, ev.Source, ev.ID, ev.Type, ev.Subject, []byte(ev.Data)); err != nil {
			_ = txB.Rollback(ctx)
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	txA, err := s.a.Begin(ctx)
	if err == nil {
		for _, ev := range events {
			if _, err = txA.Exec(ctx, seedInsert, ev.Source, ev.ID, ev.Type, ev.Subject, []byte(ev.Data)); err != nil {
				break
			}
		}
		if err == nil {
			err = txA.Commit(ctx)
		} else {
			_ = txA.Rollback(ctx)
		}
	}
	if err != nil {
		// The bug of the report: B's transaction is neither committed nor
		// rolled back. Its session stays idle in transaction, holding locks.
		http.Error(w, "write to A failed: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if err := txB.Commit(ctx); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"accepted":` + strconv.Itoa(len(events)) + `}`))
}

// switchoverFault makes A refuse to commit new rows while its flag is on:
// the report's "write to Cluster A failed to commit".
const switchoverFault = `
CREATE TABLE switchover (failing boolean NOT NULL);
INSERT INTO switchover VALUES (false);
CREATE FUNCTION refuse_during_switchover() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF (SELECT failing FROM switchover) THEN
		RAISE EXCEPTION 'switchover: commit refused';
	END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER refuse_during_switchover AFTER INSERT ON sluice_events
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_during_switchover();`

// replayFigures are one run's measurements.
type replayFigures struct {
	Design            string  `json:"design"`
	Requests          int     `json:"requests"`
	Accepted          int     `json:"events_accepted"`
	Non2xx            int     `json:"non_2xx_answers"`
	Timeouts          int     `json:"timeouts"`
	FailedEvents      int     `json:"events_never_accepted"`
	MaxBlockedOnB     int     `json:"max_sessions_waiting_on_locks_b"`
	MaxIdleInTxB      int     `json:"max_sessions_idle_in_transaction_b"`
	StaleTerminated   int     `json:"stale_sessions_terminated"`
	MigrationGotLock  bool    `json:"migration_got_its_lock"`
	SecondsWithErrors int     `json:"seconds_with_failed_answers"`
	FirstErrorSecond  float64 `json:"first_failed_second"`
	LastErrorSecond   float64 `json:"last_failed_second"`
	Timeline          []string
}

// replay runs the incident's sequence against whichever design serves url
// while loadgen publishes at 300 events/s for 60s:
//
//	t+5s   switchover: A refuses commits for 300ms (both designs); for sluice,
//	       whose writes to B never depend on A, the stale transaction that the
//	       seed's bug leaves on B is opened by hand, on rows of coming events
//	t+8s   migration on B: LOCK TABLE sluice_events IN ACCESS EXCLUSIVE MODE,
//	       waiting (or holding) at most 30s, then rolled back
//	t+40s  someone finds the stale sessions on B and terminates them
func replay(t *testing.T, p *pipeline, design, url string, openStaleByHand bool) replayFigures {
	t.Helper()
	mustExec(t, p.db("a"), switchoverFault)
	source := "seed-replay/" + p.id
	timelinePath := filepath.Join(p.dir, "timeline-"+design+".csv")
	load := make(chan loadgenResult, 1)
	began := time.Now()
	go func() {
		load <- p.loadgenAt(url, "--source", source, "--events", "18000", "--duplicates", "0", "--rate", "300",
			"--batch", "20", "--concurrency", "16", "--timeout", "5s", "--retries", "4", "--timeline-out", timelinePath)
	}()
	at := func(d time.Duration) { time.Sleep(time.Until(began.Add(d))) }

	// Sample B's sessions for the whole run.
	var mu sync.Mutex
	var maxBlocked, maxIdle int
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		admin := connect(t, p.svc.pgB)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(250 * time.Millisecond):
			}
			var blocked, idle int
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'),
				count(*) FILTER (WHERE state = 'idle in transaction')
				FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, "sluice_test_"+p.id).Scan(&blocked, &idle)
			cancel()
			if err == nil {
				mu.Lock()
				maxBlocked, maxIdle = max(maxBlocked, blocked), max(maxIdle, idle)
				mu.Unlock()
			}
		}
	}()

	at(5 * time.Second)
	mustExec(t, p.db("a"), `UPDATE switchover SET failing = true`)
	time.Sleep(300 * time.Millisecond)
	mustExec(t, p.db("a"), `UPDATE switchover SET failing = false`)
	if openStaleByHand {
		var stmts []string
		for id := 3000; id < 3100; id++ { // published around t+10s
			stmts = append(stmts, fmt.Sprintf(`INSERT INTO sluice_events (source, id, type, kafka_partition, kafka_offset)
				VALUES ('%s', '%d', 'stale', -1, -1)`, source, id))
		}
		holdLock(t, p.dsns["b"], 10*time.Minute, stmts...) // ended by the terminate at t+40s
	}

	at(8 * time.Second)
	migration := connect(t, p.dsns["b"])
	mustExec(t, migration, `SET application_name = 'migration'`)
	mustExec(t, migration, `SET lock_timeout = '30s'`)
	gotLock := make(chan bool, 1)
	go func() {
		ctx := context.Background()
		tx, err := migration.Begin(ctx)
		if err != nil {
			gotLock <- false
			return
		}
		_, err = tx.Exec(ctx, `LOCK TABLE sluice_events IN ACCESS EXCLUSIVE MODE`)
		gotLock <- err == nil
		if err == nil {
			time.Sleep(time.Until(began.Add(38 * time.Second)))
		}
		_ = tx.Rollback(ctx)
	}()

	at(40 * time.Second)
	var terminated int
	if err := connect(t, p.svc.pgB).QueryRow(context.Background(), `SELECT count(*) FROM (
		SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = $1 AND state = 'idle in transaction' AND now() - state_change > interval '5 seconds') t`,
		"sluice_test_"+p.id).Scan(&terminated); err != nil {
		t.Fatal(err)
	}
	res := <-load
	close(stopSampling)
	<-sampled

	fig := replayFigures{Design: design, Accepted: res.Accepted, Non2xx: res.Non2xx, Timeouts: res.Timeouts,
		FailedEvents: res.Failed, StaleTerminated: terminated, MigrationGotLock: <-gotLock}
	mu.Lock()
	fig.MaxBlockedOnB, fig.MaxIdleInTxB = maxBlocked, maxIdle
	mu.Unlock()
	raw, _ := os.ReadFile(timelinePath)
	fig.Timeline = strings.Split(strings.TrimSpace(string(raw)), "\n")
	fig.FirstErrorSecond = -1
	for _, line := range fig.Timeline[1:] {
		var sec, ok, non2xx, timeouts, errs int
		fmt.Sscanf(line, "%d,%d,%d,%d,%d", &sec, &ok, &non2xx, &timeouts, &errs)
		fig.Requests += ok + non2xx + timeouts + errs
		if non2xx+timeouts+errs > 0 {
			fig.SecondsWithErrors++
			if fig.FirstErrorSecond < 0 {
				fig.FirstErrorSecond = float64(sec)
			}
			fig.LastErrorSecond = float64(sec)
		}
	}
	return fig
}

// loadgenAt runs loadgen against any server speaking the ingest API.
func (p *pipeline) loadgenAt(url string, args ...string) loadgenResult {
	p.t.Helper()
	saved := p.ingestAt
	defer func() { p.ingestAt = saved }()
	p.ingestAt = strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/v1/events")
	return p.loadgen(args...)
}

// TestTheSeedDesignFailsWhereSluiceHolds is the proof: the same replay of the
// incident against the design the report describes shows the outage — failed
// or hung ingest requests while B's stale transaction holds its locks — and
// against sluice shows none.
func TestTheSeedDesignFailsWhereSluiceHolds(t *testing.T) {
	// The control run: the seed's design, on databases of its own.
	control := newPipeline(t, pipelineOptions{})
	poolA, err := pgxpool.New(context.Background(), control.dsns["a"])
	if err != nil {
		t.Fatal(err)
	}
	poolB, err := pgxpool.New(context.Background(), control.dsns["b"]+"?pool_max_conns=32")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: &seedIngest{a: poolA, b: poolB}}
	go func() { _ = srv.Serve(ln) }()
	seed := replay(t, control, "seed", "http://"+ln.Addr().String()+"/v1/events", false)
	// The seed's pools hold leaked transactions on sessions now terminated;
	// the server is abandoned, not drained.
	_ = srv.Close()
	poolA.Close()
	go poolB.Close()

	// sluice, under the same replay.
	p := newPipeline(t, pipelineOptions{})
	p.startIngest()
	p.startApply("a")
	p.startApply("b")
	ours := replay(t, p, "sluice", "http://"+p.ingestAt+"/v1/events", true)

	record(t, "incident-replay-seed-vs-sluice", []replayFigures{seed, ours})
	if seed.Non2xx+seed.Timeouts == 0 {
		t.Errorf("the control run showed no outage: the replay does not reproduce the incident")
	}
	if seed.MaxBlockedOnB < 2 {
		t.Errorf("the control run never piled up sessions on B (max %d waiting on locks)", seed.MaxBlockedOnB)
	}
	if ours.Non2xx+ours.Timeouts+ours.FailedEvents != 0 {
		t.Errorf("sluice under the same replay: %d non-2xx, %d timeouts, %d events never accepted",
			ours.Non2xx, ours.Timeouts, ours.FailedEvents)
	}
	source := "seed-replay/" + p.id
	for _, target := range []string{"a", "b"} {
		p.waitCount(target, source, 18000, 3*time.Minute)
	}
}
