package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
)

// DesiredState is the value of a target's record in sluice.control: what
// operators want every replica of the target's applier to do.
type DesiredState struct {
	Paused bool `json:"paused"`
	// Rewind is the last rewind asked for: partitions move back to it once.
	Rewind *Rewind `json:"rewind,omitempty"`
	// Skip is the last skip asked for: partitions move forward to it once,
	// and the events passed over are never applied to the target.
	Skip *Rewind `json:"skip,omitempty"`
	// Retired targets are done: every replica of their applier exits, and
	// one started later exits at once.
	Retired   bool      `json:"retired,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	By        string    `json:"by"`
	// Version counts the target's accepted changes. A record is accepted
	// only if its version is above the accepted state's: a writer writes
	// the version after the state it read, so of two writers that read the
	// same state the first wins and the other is ignored by every reader
	// (see fold). 0 is an unversioned record, always accepted.
	Version int64 `json:"version,omitempty"`
	// Write names the write, so that its writer can tell whether it was
	// accepted.
	Write string `json:"write,omitempty"`
}

// Rewind asks every replica to move every partition to an offset: back for
// a rewind, forward for a skip.
type Rewind struct {
	// ID names the command. Ids sort as strings in the order they were
	// issued, whatever the issuing hosts' clocks (see commandID): each
	// partition applies a command once, and never one whose id sorts before
	// the last it applied.
	ID string `json:"id"`
	// ToTime or ToOffset ("earliest", "latest" or a number) is what was asked.
	ToTime   *time.Time `json:"to_time,omitempty"`
	ToOffset string     `json:"to_offset,omitempty"`
	// Offsets are the offsets resolved per partition when the command was
	// issued, so that every replica moves to the same place.
	Offsets     map[int]int64 `json:"offsets"`
	RequestedAt time.Time     `json:"requested_at"`
}

// ErrConflict is returned (wrapped) by SetPaused, IssueRewind and IssueSkip
// when another operator changed the target's state between reading it and
// writing the change: nothing was changed; run the command again.
var ErrConflict = errors.New("another change to the target's desired state came first")

// Plane reads and writes sluice.control and sluice.status. Safe for
// concurrent use.
type Plane struct {
	cluster *kafkaadmin.Cluster
	control messageWriter
	status  *kafka.Writer
	// now is the local clock; tests move it.
	now func() time.Time
}

// messageWriter is what Plane needs of a *kafka.Writer, so that tests can
// make a write fail.
type messageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
	Close() error
}

// New returns a Plane on cluster. It creates no topic: callers that write
// make sure the topics exist (kafkaadmin.EnsureTopics).
func New(cluster *kafkaadmin.Cluster) *Plane {
	return &Plane{
		cluster: cluster,
		control: cluster.NewWriter(kafkaadmin.WriterConfig{Topic: kafkaadmin.ControlTopic, Linger: time.Millisecond}),
		status:  cluster.NewWriter(kafkaadmin.WriterConfig{Topic: kafkaadmin.StatusTopic, Linger: time.Millisecond}),
		now:     time.Now,
	}
}

// Close flushes and closes the writers.
func (p *Plane) Close() error {
	return errors.Join(p.control.Close(), p.status.Close())
}

// fold is the control topic read in order: each target's accepted state.
//
// A record is accepted when it is the first seen for its target (the log
// may have been compacted), unversioned, or of a version above the accepted
// state's; anything else lost a race and is ignored. A tombstone forgets
// the target. "Above", not "exactly the next": compaction may leave a lost
// record first, and the re-published winner that follows it (see repair)
// must still be accepted, or a restarted reader would keep the loser's
// state and ignore every change after it.
//
// Compaction keeps only the newest record of each key, so the fold of a
// compacted log is the fold of the whole log only if the newest record of
// each target is accepted. Plane keeps it so: whoever sees a lost record
// newest — its writer reading its write back, any later writer, any
// Current — re-publishes the accepted state after it (repair), and a writer
// whose re-publish failed is told (ErrUnrepaired). A re-published state is
// content-identical to the accepted one, so even a re-publish that itself
// loses a race and stays newest leaves the accepted state after compaction.
type fold struct {
	states map[string]DesiredState
	// newestLost is set for a target whose newest record was ignored.
	newestLost map[string]bool
	// writes tells, for each write id seen, whether it was accepted.
	writes map[string]bool
}

func newFold() *fold {
	return &fold{states: map[string]DesiredState{}, newestLost: map[string]bool{}, writes: map[string]bool{}}
}

// apply folds m in and reports whether it changed the target's state.
func (f *fold) apply(m kafka.Message) (DesiredState, bool) {
	target := string(m.Key)
	if m.Value == nil {
		_, had := f.states[target]
		delete(f.states, target)
		f.newestLost[target] = false
		return DesiredState{}, had
	}
	var s DesiredState
	if json.Unmarshal(m.Value, &s) != nil {
		return f.states[target], false // unreadable: ignored, as an older build would
	}
	cur, seen := f.states[target]
	accepted := !seen || s.Version == 0 || s.Version > cur.Version
	if s.Write != "" {
		f.writes[s.Write] = accepted
	}
	f.newestLost[target] = !accepted
	if !accepted {
		return cur, false
	}
	f.states[target] = s
	return s, true
}

// read folds the control topic to its end.
func (p *Plane) read(ctx context.Context) (*fold, error) {
	f := newFold()
	err := p.cluster.ReadToEnd(ctx, kafkaadmin.ControlTopic, 0, func(m kafka.Message) { f.apply(m) })
	if err != nil && !errors.Is(err, kafkaadmin.ErrNoTopic) {
		return nil, fmt.Errorf("read %s: %w", kafkaadmin.ControlTopic, err)
	}
	return f, nil
}

// Current reads the control topic to its end and returns each target's
// accepted desired state. No control topic yet means nobody asked anything.
//
// A target whose newest record is a lost write is repaired on the way (see
// fold): compaction would otherwise leave the loser's state to restarted
// replicas. The repair is best effort: a read must not fail because it
// could not write. The next read or change tries again, and until the
// segment holding the lost record rolls (compaction never touches the
// active one) the history that outvotes it is still there.
func (p *Plane) Current(ctx context.Context) (map[string]DesiredState, error) {
	f, err := p.read(ctx)
	if err != nil {
		return nil, err
	}
	for target, lost := range f.newestLost {
		if lost {
			_ = p.repair(ctx, f, target)
		}
	}
	return f.states, nil
}

// Publish writes a target's desired state as it is, unconditionally, and
// returns once Kafka has it. Operator commands go through update instead.
func (p *Plane) Publish(ctx context.Context, target string, s DesiredState) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return p.control.WriteMessages(ctx, kafka.Message{Key: []byte(target), Value: b})
}

// readBackAttempts bounds the reads that wait for a write to show up, and
// the re-publishes of a repair that keeps losing races.
const readBackAttempts = 5

// update applies change to target's current state and writes the result
// as the next version, conditional on that state, then reads the topic
// back: it reports true only once every reader accepts the write. If
// another writer's change came first, every reader ignores this one and
// update returns ErrConflict; if the write cannot be read back, it returns
// ErrNotAccepted. Either way, when the target's newest record is a lost
// write (this one or another), update re-publishes the accepted state after
// it (see fold), and a loser whose re-publish failed gets ErrUnrepaired as
// well. change reports whether there is anything to write; it may set
// fields from the state it is given, which is the accepted one.
func (p *Plane) update(ctx context.Context, target, by string, change func(*DesiredState) (bool, error)) (bool, error) {
	f, err := p.read(ctx)
	if err != nil {
		return false, err
	}
	s := f.states[target]
	changed, err := change(&s)
	if err != nil || !changed {
		return false, err
	}
	s.Version++
	s.UpdatedAt, s.By, s.Write = p.now().UTC(), by, newWriteID()
	if err := p.Publish(ctx, target, s); err != nil {
		return false, err
	}
	accepted, seen := false, false
	for attempt := 0; !seen; attempt++ {
		if attempt == readBackAttempts {
			return false, fmt.Errorf("%w: %s: written, but not in %s when read back %d times",
				ErrNotAccepted, target, kafkaadmin.ControlTopic, readBackAttempts)
		}
		if f, err = p.read(ctx); err != nil {
			return false, fmt.Errorf("%w: %s: written, but not read back: %w", ErrNotAccepted, target, err)
		}
		accepted, seen = f.writes[s.Write]
	}
	winner := f.states[target]
	repaired := p.repair(ctx, f, target)
	if accepted {
		// The change holds whatever came after it: later changes are
		// based on it. A lost write after it is its writer's to repair;
		// this one tried too, and the next read tries again.
		return true, nil
	}
	conflict := fmt.Errorf("%w: %s's state was changed by %s at %s; nothing was changed, run the command again",
		ErrConflict, target, winner.By, winner.UpdatedAt.Format(time.RFC3339))
	if repaired != nil {
		return false, fmt.Errorf("%w; %w", conflict, repaired)
	}
	return false, conflict
}

// repair re-publishes target's accepted state, as the next version, while
// its newest record in f and in the reads after is a lost write, so that
// compaction keeps the accepted state (see fold). The re-published state
// is the accepted one as it is, with only a new version and write id.
func (p *Plane) repair(ctx context.Context, f *fold, target string) error {
	for attempt := 0; f.newestLost[target]; attempt++ {
		if attempt == readBackAttempts {
			return fmt.Errorf("%w: %s: a lost write is still its newest record after %d re-publishes",
				ErrUnrepaired, target, readBackAttempts)
		}
		s := f.states[target]
		s.Version++
		s.Write = newWriteID()
		if err := p.Publish(ctx, target, s); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrUnrepaired, target, err)
		}
		var err error
		if f, err = p.read(ctx); err != nil {
			return fmt.Errorf("%w: %s: re-published, but not read back: %w", ErrUnrepaired, target, err)
		}
	}
	return nil
}

func newWriteID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// SetPaused pauses or resumes a target, keeping the rest of its state. It
// reports false, and writes nothing, when the target already is so.
func (p *Plane) SetPaused(ctx context.Context, target string, paused bool, by string) (bool, error) {
	return p.update(ctx, target, by, func(s *DesiredState) (bool, error) {
		if s.Paused == paused {
			return false, nil
		}
		s.Paused = paused
		return true, nil
	})
}

// IssueRewind resolves req and publishes it for target, keeping its pause.
// It names the rewind after every command already issued for target (see
// commandID), and returns nil error only once the rewind is the accepted
// state.
func (p *Plane) IssueRewind(ctx context.Context, target, eventsTopic string, req RewindRequest, by string) (*Rewind, error) {
	rw, err := p.ResolveRewind(ctx, eventsTopic, req)
	if err != nil {
		return nil, err
	}
	_, err = p.update(ctx, target, by, func(s *DesiredState) (bool, error) {
		id, err := p.commandID(*s)
		if err != nil {
			return false, err
		}
		rw.ID = id
		s.Rewind = rw
		return true, nil
	})
	return rw, err
}

// SetRetired marks a target retired. It reports false when it already was.
func (p *Plane) SetRetired(ctx context.Context, target, by string) (bool, error) {
	return p.update(ctx, target, by, func(s *DesiredState) (bool, error) {
		if s.Retired {
			return false, nil
		}
		s.Retired = true
		return true, nil
	})
}

// IssueSkip publishes a skip for target: every partition moves forward to
// skip's offsets, and the events between are never applied to it. It sets
// skip.ID to sort after every command already issued for target (see
// commandID): commands issued since ResolveSkip named it come before it.
// It returns nil only once the skip is the accepted state.
func (p *Plane) IssueSkip(ctx context.Context, target string, skip *Rewind, by string) error {
	_, err := p.update(ctx, target, by, func(s *DesiredState) (bool, error) {
		id, err := p.commandID(*s)
		if err != nil {
			return false, err
		}
		skip.ID = id
		s.Skip = skip
		return true, nil
	})
	return err
}

// Follow passes target's desired state to obey: once with the state the
// control topic holds when Follow starts (the accepted state only, never the
// history, so a replica that re-reads the topic after a broker restart does
// not replay old pauses and rewinds), then each accepted change, until ctx
// ends or reading fails; the caller retries. caughtUp is called once the
// starting state is known (also when there is none).
func (p *Plane) Follow(ctx context.Context, target string, caughtUp func(), obey func(DesiredState)) error {
	f := newFold()
	live := false
	return p.cluster.Follow(ctx, kafkaadmin.ControlTopic, func() {
		live = true
		if s, ok := f.states[target]; ok {
			obey(s)
		}
		caughtUp()
	}, func(m kafka.Message) {
		s, changed := f.apply(m)
		if live && changed && string(m.Key) == target {
			obey(s)
		}
	})
}
