package consumer

import (
	"context"
	"sync"

	"github.com/sluicehq/sluice/control"
	"github.com/sluicehq/sluice/internal/targetdb"
)

// controlView is an applier's copy of its target's desired state, with a
// channel closed on every change so that workers waiting or fetching react
// at once. Safe for concurrent use.
type controlView struct {
	mu      sync.Mutex
	state   control.DesiredState
	changed chan struct{}
}

func newControlView() *controlView { return &controlView{changed: make(chan struct{})} }

func (v *controlView) get() (control.DesiredState, <-chan struct{}) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state, v.changed
}

func (v *controlView) set(s control.DesiredState) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.state = s
	close(v.changed)
	v.changed = make(chan struct{})
}

// followControl follows this target's desired state until ctx ends,
// closing read once the state at start is known.
func (a *Applier) followControl(ctx context.Context, read chan<- struct{}) {
	var once sync.Once
	announce := func() { once.Do(func() { close(read) }) }
	for attempt := 0; ctx.Err() == nil; attempt++ {
		began := a.cfg.now()
		err := a.plane.Follow(ctx, a.cfg.Target, announce, a.obey)
		if ctx.Err() != nil {
			return
		}
		if a.cfg.now().Sub(began) > a.cfg.RetryMax {
			attempt = 0 // it worked for a while: this is a new failure, not the same one
		}
		a.log.Warn("following the control topic failed; retrying", "err", err, "attempt", attempt)
		sleep(ctx, a.backoff(attempt))
	}
}

// obey makes s the desired state every worker follows. Repeating the
// current state changes nothing.
func (a *Applier) obey(s control.DesiredState) {
	if s.Retired {
		a.retireOnce.Do(func() { close(a.retired) })
	}
	prev, _ := a.ctrl.get()
	sameRewind, sameSkip := commandID(prev.Rewind) == commandID(s.Rewind), commandID(prev.Skip) == commandID(s.Skip)
	if prev.Paused == s.Paused && sameRewind && sameSkip {
		return
	}
	a.ctrl.set(s)
	if s.Paused {
		a.m.paused.Set(1)
	} else {
		a.m.paused.Set(0)
	}
	a.report.changed()
	if s.Paused && !prev.Paused {
		a.log.Warn("paused by operator", "by", s.By)
		targetdb.CloseIdle(a.pool) // a paused applier holds no session
	}
	if !s.Paused && prev.Paused {
		a.log.Info("resumed by operator", "by", s.By)
	}
	if !sameRewind && s.Rewind != nil {
		a.log.Warn("rewind requested by operator", "rewind", s.Rewind.ID, "by", s.By, "offsets", s.Rewind.Offsets)
	}
	if !sameSkip && s.Skip != nil {
		a.log.Warn("skip requested by operator", "skip", s.Skip.ID, "by", s.By, "offsets", s.Skip.Offsets)
	}
}

func commandID(c *control.Rewind) string {
	if c == nil {
		return ""
	}
	return c.ID
}
