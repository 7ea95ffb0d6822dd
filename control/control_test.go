package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/testenv"
)

// newTestPlane is a Plane on the local broker with the control and status
// topics created. Tests use target names of their own, so they share those
// topics with anything else running on the stack.
func newTestPlane(t *testing.T) (*Plane, *kafkaadmin.Cluster) {
	t.Helper()
	cluster := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cluster.EnsureTopics(ctx, 1, kafkaadmin.ControlTopicSpec(), kafkaadmin.StatusTopicSpec()); err != nil {
		t.Fatal(err)
	}
	p := New(cluster)
	t.Cleanup(func() { p.Close() })
	return p, cluster
}

func publishEvents(t *testing.T, cluster *kafkaadmin.Cluster, topic string, partition, n int) {
	t.Helper()
	w := cluster.NewWriter(kafkaadmin.WriterConfig{Topic: topic})
	w.Balancer = kafka.BalancerFunc(func(kafka.Message, ...int) int { return partition })
	defer w.Close()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Value: testenv.Event("s", fmt.Sprint(i))}
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

func TestResolveRewind(t *testing.T) {
	p, cluster := newTestPlane(t)
	topic := testenv.Topic(t, cluster, 2)
	publishEvents(t, cluster, topic, 0, 10)
	midpoint := time.Now()
	time.Sleep(50 * time.Millisecond)
	publishEvents(t, cluster, topic, 0, 5)
	publishEvents(t, cluster, topic, 1, 3)
	ctx := context.Background()
	after := time.Now().Add(time.Hour)
	cases := []struct {
		name    string
		req     RewindRequest
		want    map[int]int64
		wantErr error
	}{
		{"earliest is the log start of every partition", RewindRequest{ToOffset: "earliest"}, map[int]int64{0: 0, 1: 0}, nil},
		{"an offset is capped at each partition's end", RewindRequest{ToOffset: "12"}, map[int]int64{0: 12, 1: 3}, nil},
		{"a time finds the first record at or after it", RewindRequest{ToTime: &midpoint}, map[int]int64{0: 10, 1: 0}, nil},
		{"a time after every record is the log end", RewindRequest{ToTime: &after}, map[int]int64{0: 15, 1: 3}, nil},
		{"neither a time nor an offset is refused", RewindRequest{}, nil, ErrBadRewind},
		{"both a time and an offset are refused", RewindRequest{ToTime: &midpoint, ToOffset: "1"}, nil, ErrBadRewind},
		{"a negative offset is refused", RewindRequest{ToOffset: "-3"}, nil, ErrBadRewind},
		{"a word other than earliest is refused", RewindRequest{ToOffset: "latest"}, nil, ErrBadRewind},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rw, err := p.ResolveRewind(ctx, topic, c.req)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(rw.Offsets) != fmt.Sprint(c.want) {
				t.Fatalf("offsets %v, want %v", rw.Offsets, c.want)
			}
			if rw.ID == "" || rw.RequestedAt.IsZero() {
				t.Fatalf("rewind without id or time: %+v", rw)
			}
		})
	}
	if _, err := p.ResolveRewind(ctx, "sluice.test.missing-"+testenv.ID(), RewindRequest{ToOffset: "earliest"}); !errors.Is(err, kafkaadmin.ErrNoTopic) {
		t.Errorf("rewind of a missing topic: %v, want ErrNoTopic", err)
	}
}

func TestFollowStartsFromTheLatestStateNotTheHistory(t *testing.T) {
	p, _ := newTestPlane(t)
	ctx := context.Background()
	target := "t" + testenv.ID()
	history := []DesiredState{
		{Paused: true, By: "1"},
		{Paused: false, Rewind: &Rewind{ID: "old"}, By: "2"},
		{Paused: true, Rewind: &Rewind{ID: "new"}, By: "3"},
	}
	for _, s := range history {
		if err := p.Publish(ctx, target, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Publish(ctx, "other-"+target, DesiredState{By: "someone else"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []DesiredState
	caught := make(chan struct{})
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() {
		done <- p.Follow(fctx, target, func() { close(caught) }, func(s DesiredState) {
			mu.Lock()
			seen = append(seen, s)
			mu.Unlock()
		})
	}()
	select {
	case <-caught:
	case <-time.After(10 * time.Second):
		t.Fatal("Follow never caught up")
	}
	mu.Lock()
	if len(seen) != 1 || seen[0].By != "3" {
		t.Fatalf("at catch-up Follow passed %+v; want only the latest state (by 3)", seen)
	}
	mu.Unlock()
	if err := p.Publish(ctx, target, DesiredState{By: "4"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a change after catch-up was not passed on within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if seen[1].By != "4" {
		t.Fatalf("live change %+v, want by 4", seen[1])
	}
}

func TestSetPausedWritesOnlyChanges(t *testing.T) {
	p, _ := newTestPlane(t)
	ctx := context.Background()
	target := "t" + testenv.ID()
	for i, step := range []struct {
		paused, wantChanged bool
	}{{true, true}, {true, false}, {false, true}, {false, false}} {
		changed, err := p.SetPaused(ctx, target, step.paused, "test")
		if err != nil || changed != step.wantChanged {
			t.Fatalf("step %d: SetPaused(%v) = %v, %v; want changed %v", i, step.paused, changed, err, step.wantChanged)
		}
	}
}

func TestStatusesKeepTheLatestReportOfEachReplica(t *testing.T) {
	p, _ := newTestPlane(t)
	ctx := context.Background()
	target := "t" + testenv.ID()
	now := time.Now().UTC()
	for _, s := range []ApplierStatus{
		{Target: target, Replica: "r1", Breaker: "closed", UpdatedAt: now},
		{Target: target, Replica: "r2", Breaker: "closed", UpdatedAt: now},
		{Target: target, Replica: "r1", Breaker: "open", LastError: "lock not available", UpdatedAt: now},
	} {
		if err := p.PublishStatus(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	got, err := p.Statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list := got[target]
	if len(list) != 2 || list[0].Replica != "r1" || list[0].Breaker != "open" || list[0].LastError == "" || list[1].Replica != "r2" {
		t.Fatalf("statuses %+v", list)
	}
	if err := p.ForgetStatus(ctx, target, "r2"); err != nil {
		t.Fatal(err)
	}
	got, err = p.Statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if list := got[target]; len(list) != 1 || list[0].Replica != "r1" {
		t.Fatalf("after r2's tombstone: %+v", list)
	}
	if !(ApplierStatus{UpdatedAt: now.Add(-time.Minute), Every: time.Second}).Stale(now) {
		t.Error("a report a minute old at a 1s interval is not stale")
	}
	if (ApplierStatus{UpdatedAt: now.Add(-time.Second), Every: time.Second}).Stale(now) {
		t.Error("a report one interval old is stale")
	}
}

// Two operators change one target at once: each change is conditional on
// the state its operator read, so one wins, the other is told, and no
// reader ever sees the loser's state.
func TestConcurrentOperatorChangesNeverLoseOneSilently(t *testing.T) {
	p, cluster := newTestPlane(t)
	ctx := context.Background()
	target := "t" + testenv.ID()
	topic := testenv.Topic(t, cluster, 1)
	if _, err := p.SetPaused(ctx, target, false, "setup"); err != nil {
		t.Fatal(err)
	}
	for round := range 6 {
		var wg sync.WaitGroup
		var pauseErr, rewindErr error
		var rw *Rewind
		wg.Add(2)
		go func() { defer wg.Done(); _, pauseErr = p.SetPaused(ctx, target, round%2 == 0, "alice") }()
		go func() {
			defer wg.Done()
			rw, rewindErr = p.IssueRewind(ctx, target, topic, RewindRequest{ToOffset: "earliest"}, "bob")
		}()
		wg.Wait()
		for _, err := range []error{pauseErr, rewindErr} {
			if err != nil && !errors.Is(err, ErrConflict) {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		states, err := p.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s := states[target]
		// Whatever succeeded is in the state; whatever was refused is not.
		if pauseErr == nil && s.Paused != (round%2 == 0) {
			t.Errorf("round %d: the pause succeeded but the state says paused=%v", round, s.Paused)
		}
		if rewindErr == nil && (s.Rewind == nil || s.Rewind.ID != rw.ID) {
			t.Errorf("round %d: the rewind succeeded but the state holds %+v", round, s.Rewind)
		}
		if rewindErr != nil && s.Rewind != nil && rw != nil && s.Rewind.ID == rw.ID {
			t.Errorf("round %d: the rewind was refused but the state holds it", round)
		}
		if pauseErr == nil && rewindErr == nil {
			continue
		}
		t.Logf("round %d: pause %v, rewind %v", round, pauseErr, rewindErr)
	}
}

func TestALostWriteIsIgnoredByEveryReader(t *testing.T) {
	f := newFold()
	rec := func(s DesiredState) kafka.Message {
		b, _ := json.Marshal(s)
		return kafka.Message{Key: []byte("b"), Value: b}
	}
	steps := []struct {
		name       string
		s          DesiredState
		wantPaused bool
		wantLost   bool
	}{
		{"the first record seen is accepted (the log may be compacted)", DesiredState{Version: 7, Paused: true}, true, false},
		{"the next version is accepted", DesiredState{Version: 8, Paused: false}, false, false},
		{"a write based on an older state lost its race", DesiredState{Version: 8, Paused: true}, false, true},
		{"the winner written again by the loser is accepted", DesiredState{Version: 9, Paused: false}, false, false},
		{"an unversioned record (an older build) is accepted", DesiredState{Paused: true}, true, false},
	}
	for _, s := range steps {
		f.apply(rec(s.s))
		if f.states["b"].Paused != s.wantPaused || f.newestLost["b"] != s.wantLost {
			t.Fatalf("%s: paused %v lost %v", s.name, f.states["b"].Paused, f.newestLost["b"])
		}
	}
}
