package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/testenv"
)

// ctl runs `sluice ctl ARGS…` and returns its output, failing the test on a
// non-zero exit.
func (p *pipeline) ctl(args ...string) string {
	p.t.Helper()
	out, err := p.ctlErr(args...)
	if err != nil {
		p.t.Fatalf("sluice ctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (p *pipeline) ctlErr(args ...string) (string, error) {
	out, err := p.command(append([]string{"ctl"}, args...)...).CombinedOutput()
	return string(out), err
}

// waitAll waits until every replica reports series at value, and returns
// how long that took.
func waitAll(t *testing.T, replicas []*applier, series string, value float64, timeout time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	for time.Since(began) < timeout {
		all := true
		for _, r := range replicas {
			if v, err := scrape(r.addr, series); err != nil || v != value {
				all = false
			}
		}
		if all {
			return time.Since(began)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("not every replica reports %s = %v after %v", series, value, timeout)
	return 0
}

// TestPauseStopsEveryReplicaWithinASecond pauses B under load with two
// replicas of each applier: B's rows stop growing within a second on both,
// A goes on, ingest is unaffected; after resume B catches up exactly.
func TestPauseStopsEveryReplicaWithinASecond(t *testing.T) {
	p := newPipeline(t, pipelineOptions{})
	p.startIngest()
	p.startApply("a")
	p.startApplyAt("a", testenv.FreeAddr(t))
	b1 := p.startApply("b")
	b2 := p.startApplyAt("b", testenv.FreeAddr(t))
	source := "pause/" + p.id
	load := make(chan loadgenResult, 1)
	go func() {
		load <- p.loadgen("--source", source, "--events", "12000", "--duplicates", "0", "--rate", "400", "--batch", "20")
	}()
	p.waitCount("b", source, 1500, time.Minute)

	out := p.ctl("pause", p.targets["b"])
	pausedAt := time.Now()
	if !strings.Contains(out, "paused") {
		t.Fatalf("ctl pause said: %s", out)
	}
	paused := fmt.Sprintf(`sluice_target_paused{target=%q}`, p.targets["b"])
	obeyed := waitAll(t, []*applier{b1, b2}, paused, 1, 5*time.Second)
	t.Logf("both replicas of B report paused %v after ctl pause returned", obeyed.Round(time.Millisecond))
	if obeyed > time.Second {
		t.Errorf("replicas obeyed pause after %v; the promise is a second", obeyed)
	}
	// Rows stop growing: allow the batch in flight to commit, then none.
	time.Sleep(time.Second)
	frozen := p.count("b", source)
	aBefore := p.count("a", source)
	time.Sleep(3 * time.Second)
	if n := p.count("b", source); n != frozen {
		t.Errorf("B grew from %d to %d rows while paused", frozen, n)
	}
	if n := p.count("a", source); n <= aBefore {
		t.Errorf("A stopped too (%d → %d rows): pausing B must not touch A", aBefore, n)
	}
	if out := p.ctl("pause", p.targets["b"]); !strings.Contains(out, "already paused") {
		t.Errorf("pausing a paused target said: %s", out)
	}
	view := p.statusOf(t, "b")
	if view["state"] != "paused" {
		t.Errorf("ctl status says B is %v", view["state"])
	}
	sessions := 0
	if err := connect(t, p.svc.pgB).QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle'`,
		"sluice-apply-"+p.targets["b"]).Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	if sessions != 0 {
		t.Errorf("a paused applier has %d non-idle sessions on B", sessions)
	}

	p.ctl("resume", p.targets["b"])
	resumed := waitAll(t, []*applier{b1, b2}, paused, 0, 5*time.Second)
	res := <-load
	if res.Non2xx != 0 || res.Failed != 0 {
		t.Errorf("ingest was affected by pausing B: %+v", res)
	}
	for _, target := range []string{"a", "b"} {
		p.waitCount(target, source, res.UniqueAccepted, 2*time.Minute)
		got, rows := p.ids(target, source)
		if rows != res.UniqueAccepted || sameSet(res.ids, got) != nil {
			t.Errorf("target %s: %d rows, want exactly the %d accepted", target, rows, res.UniqueAccepted)
		}
	}
	record(t, "control-pause", map[string]any{
		"pause_obeyed_by_both_replicas_seconds": obeyed.Seconds(), "resume_obeyed_seconds": resumed.Seconds(),
		"paused_for_seconds": time.Since(pausedAt).Seconds(),
	})
}

// TestRewindRestoresDeletedRows deletes B's rows after a time T and rewinds
// B to T: B must equal A again, with no duplicates.
func TestRewindRestoresDeletedRows(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{})
	p.startIngest()
	p.startApply("a")
	p.startApply("b")
	p.startApplyAt("b", testenv.FreeAddr(t))
	before := p.loadgen("--source", "before/"+p.id, "--events", "3000", "--duplicates", "0")
	time.Sleep(1100 * time.Millisecond) // record timestamps have millisecond precision
	T := time.Now().UTC()
	time.Sleep(100 * time.Millisecond)
	after := p.loadgen("--source", "after/"+p.id, "--events", "3000", "--duplicates", "0")
	for _, target := range []string{"a", "b"} {
		p.waitCount(target, "before/"+p.id, before.UniqueAccepted, time.Minute)
		p.waitCount(target, "after/"+p.id, after.UniqueAccepted, time.Minute)
	}
	mustExec(t, p.db("b"), `DELETE FROM sluice_events WHERE source = $1`, "after/"+p.id)
	if out, err := p.ctlErr("verify", p.targets["a"], p.targets["b"]); err == nil {
		t.Fatalf("verify found no difference after deleting rows:\n%s", out)
	}

	began := time.Now()
	out := p.ctl("rewind", p.targets["b"], "--to", T.Format(time.RFC3339Nano))
	t.Logf("ctl rewind: %s", out)
	p.waitCount("b", "after/"+p.id, after.UniqueAccepted, 2*time.Minute)
	restored := time.Since(began)
	for src, want := range map[string]int{"before/" + p.id: before.UniqueAccepted, "after/" + p.id: after.UniqueAccepted} {
		if _, rows := p.ids("b", src); rows != want {
			t.Errorf("B holds %d rows of %s, want %d", rows, src, want)
		}
	}
	if out, err := p.ctlErr("verify", p.targets["a"], p.targets["b"]); err != nil || !strings.Contains(out, "agree") {
		t.Errorf("verify after the rewind: %v\n%s", err, out)
	}
	record(t, "control-rewind", map[string]any{"rows_restored": after.UniqueAccepted, "seconds_to_restore": restored.Seconds()})
}

// TestRewindCompletesOnceAcrossAReplicaRestart kills one of B's two replicas
// right after a rewind is issued and restarts it: every partition must be
// rewound exactly once, and B must end equal to A.
func TestRewindCompletesOnceAcrossAReplicaRestart(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{})
	p.startIngest()
	p.startApply("a")
	p.startApply("b")
	b2addr := testenv.FreeAddr(t)
	b2 := p.startApplyAt("b", b2addr)
	res := p.loadgen("--events", "20000", "--duplicates", "0")
	p.waitCount("a", res.Source, res.UniqueAccepted, 2*time.Minute)
	p.waitCount("b", res.Source, res.UniqueAccepted, 2*time.Minute)

	p.ctl("rewind", p.targets["b"], "--to-offset", "earliest")
	time.Sleep(150 * time.Millisecond)
	b2.kill()
	time.Sleep(500 * time.Millisecond)
	b2 = p.startApplyAt("b", b2addr)

	// Every partition's offsets row carries the rewind, and B is complete.
	conn := p.db("b")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var rewound, atEnd int
		err := conn.QueryRow(context.Background(), `SELECT count(DISTINCT rewind_id) FILTER (WHERE rewind_id IS NOT NULL),
			count(*) FILTER (WHERE rewind_id IS NOT NULL) FROM sluice_offsets WHERE topic = $1`, p.topic).Scan(&rewound, &atEnd)
		if err != nil {
			t.Fatal(err)
		}
		if rewound == 1 && atEnd == p.partitions {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes %d partitions carry the rewind", atEnd)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The replay after the rewind reaches the log end again.
	for end := p.topicEnd(); ; {
		var applied int64
		if err := conn.QueryRow(context.Background(), `SELECT sum(next_offset) FROM sluice_offsets WHERE topic = $1`, p.topic).Scan(&applied); err != nil {
			t.Fatal(err)
		}
		if applied == end {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the rewind B's offsets sum to %d, the log ends at %d", applied, end)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got, rows := p.ids("b", res.Source); rows != res.UniqueAccepted || sameSet(res.ids, got) != nil {
		t.Errorf("B holds %d rows, want exactly %d", rows, res.UniqueAccepted)
	}
	// Exactly once: across both replicas' logs (the killed one's included),
	// each partition was rewound one time.
	rewinds := 0
	for _, pr := range p.procs {
		if strings.HasPrefix(pr.name, "apply-b") {
			b, _ := os.ReadFile(pr.log)
			rewinds += strings.Count(string(b), `msg="partition rewound"`)
		}
	}
	if rewinds != p.partitions {
		t.Errorf("partitions were rewound %d times in all; want once each (%d)", rewinds, p.partitions)
	}
}

// TestDLQReplayCompletesTheTargetOnceTheCauseIsFixed: events B refused go to
// its DLQ; after the constraint is dropped, `ctl dlq replay` applies them and
// B holds every event.
func TestDLQReplayCompletesTheTargetOnceTheCauseIsFixed(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{})
	mustExec(t, p.db("b"), `ALTER TABLE sluice_events ADD CONSTRAINT amount_is_not_13
		CHECK (coalesce((data->>'amount')::int, 0) <> 13)`)
	p.startIngest()
	p.startApply("a")
	p.startApply("b")
	res := p.loadgen("--events", "3000", "--duplicates", "0")
	p.waitCount("b", res.Source, 2997, time.Minute) // ids 13, 1013, 2013 are refused
	readDLQ(t, p, "b", 3)

	list := p.ctl("dlq", "list", p.targets["b"])
	if !strings.Contains(list, "3 dead-lettered events pending") || !strings.Contains(list, "23514") {
		t.Fatalf("dlq list:\n%s", list)
	}
	// Replaying before the fix changes nothing, and keeps them pending.
	out := p.ctl("dlq", "replay", p.targets["b"])
	if !strings.Contains(out, "0 events applied") || !strings.Contains(out, "3 still failing") {
		t.Fatalf("dlq replay before the fix:\n%s", out)
	}
	if list := p.ctl("dlq", "list", p.targets["b"]); !strings.Contains(list, "3 dead-lettered events pending") {
		t.Fatalf("after a failed replay the 3 events must still be pending:\n%s", list)
	}

	mustExec(t, p.db("b"), `ALTER TABLE sluice_events DROP CONSTRAINT amount_is_not_13`)
	out = p.ctl("dlq", "replay", p.targets["b"])
	if !strings.Contains(out, "3 events applied") {
		t.Fatalf("dlq replay after the fix:\n%s", out)
	}
	got, rows := p.ids("b", res.Source)
	if rows != 3000 || sameSet(res.ids, got) != nil {
		t.Errorf("B holds %d rows after the replay, want all 3000", rows)
	}
	if list := p.ctl("dlq", "list", p.targets["b"]); !strings.Contains(list, "0 dead-lettered events pending") {
		t.Errorf("after the replay:\n%s", list)
	}
	if out, err := p.ctlErr("verify", p.targets["a"], p.targets["b"]); err != nil {
		t.Errorf("verify: %v\n%s", err, out)
	}
}

// TestOperatorErrorsAreClear: each mistake an operator can make gets an
// answer that says what is wrong, and exit code 2.
func TestOperatorErrorsAreClear(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{})
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"pause", "nosuch"}, `unknown target "nosuch"`},
		{[]string{"rewind", "nosuch", "--to-offset", "earliest"}, `unknown target "nosuch"`},
		{[]string{"dlq", "list", "nosuch"}, `unknown target "nosuch"`},
		{[]string{"verify", p.targets["a"], "nosuch"}, `unknown target "nosuch"`},
		{[]string{"rewind", p.targets["b"]}, "exactly one of --to or --to-offset"},
		{[]string{"rewind", p.targets["b"], "--to", "yesterday"}, "not an RFC 3339 time"},
		{[]string{"rewind", p.targets["b"], "--to-offset", "-5"}, "neither \"earliest\" nor a non-negative number"},
		{[]string{"frobnicate"}, `unknown ctl command "frobnicate"`},
	}
	for _, c := range cases {
		out, err := p.ctlErr(c.args...)
		code := -1
		if ee, ok := err.(interface{ ExitCode() int }); ok {
			code = ee.ExitCode()
		}
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("ctl %v: exit %d, output %q; want exit 2 saying %q", c.args, code, out, c.want)
		}
	}
	out := p.ctl("resume", p.targets["b"])
	if !strings.Contains(out, "not paused: nothing to do") {
		t.Errorf("resuming a running target said: %s", out)
	}
}

// TestRewindBeforeRetentionIsRefused lets retention delete the first records
// of the topic, then asks to rewind to before them: ctl must refuse, saying
// the records are gone, instead of silently starting later.
func TestRewindBeforeRetentionIsRefused(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{})
	// The topic first, with a retention of a second and short segments.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := p.kafka()
	if _, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: p.topic, NumPartitions: p.partitions, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "1000"}, {ConfigName: "segment.ms", ConfigValue: "200"}},
	}}}); err != nil {
		t.Fatal(err)
	}
	p.startIngest()
	before := time.Now().UTC()
	p.loadgen("--events", "600", "--duplicates", "0")
	deadline := time.Now().Add(45 * time.Second)
	for {
		time.Sleep(500 * time.Millisecond)
		p.loadgen("--events", "60", "--duplicates", "0") // new records roll the old segments
		starts := logStarts(t, p)
		if starts[0] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retention deleted nothing in 45s: log starts %v", starts)
		}
	}
	// Nothing new is appended now, so retention stops deleting once the
	// closed segments are gone: wait for the log starts to settle.
	for settled := logStarts(t, p); ; {
		time.Sleep(2500 * time.Millisecond)
		now := logStarts(t, p)
		if fmt.Sprint(now) == fmt.Sprint(settled) {
			break
		}
		settled = now
	}
	for _, args := range [][]string{
		{"rewind", p.targets["b"], "--to-offset", "0"},
		{"rewind", p.targets["b"], "--to", before.Format(time.RFC3339Nano)},
	} {
		out, err := p.ctlErr(args...)
		if err == nil || !strings.Contains(out, "before the topic's retention") {
			t.Errorf("ctl %v: %v\n%s", args, err, out)
		}
	}
	if out, err := p.ctlErr("rewind", p.targets["b"], "--to-offset", "earliest"); err != nil {
		t.Errorf("rewind to the earliest record still held must work: %v\n%s", err, out)
	}
}

func logStarts(t *testing.T, p *pipeline) map[int]int64 {
	t.Helper()
	client := p.kafka()
	var reqs []kafka.OffsetRequest
	for part := range p.partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(part))
	}
	resp, err := client.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{p.topic: reqs}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int64{}
	for _, po := range resp.Topics[p.topic] {
		out[po.Partition] = po.FirstOffset
	}
	return out
}
