package operations

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/control"
)

// TargetView is one target as operators see it.
type TargetView struct {
	TargetStatus
	State string `json:"state"` // running or paused: the desired state
	// Applier is up (a replica reports), stale (its reports stopped) or
	// none (no replica has reported).
	Applier string `json:"applier"`
	// Breaker is the worst breaker of the live replicas: closed, half-open,
	// open, or unknown when no replica is live.
	Breaker  string                  `json:"breaker"`
	Replicas []control.ApplierStatus `json:"replicas"`
	Rewind   *control.Rewind         `json:"rewind,omitempty"`
}

// Timeouts of the parts of Status.
const (
	controlReadTimeout = 10 * time.Second
	inspectTimeout     = 15 * time.Second
)

// Status asks Kafka, the control and status topics, and each target's
// database about targets (all configured ones when none is named).
func (o *Ops) Status(ctx context.Context, names ...string) ([]TargetView, error) {
	targets := o.targets
	if len(names) > 0 {
		targets = nil
		for _, n := range names {
			t, err := o.Target(n)
			if err != nil {
				return nil, err
			}
			targets = append(targets, t)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, controlReadTimeout)
	desired, err := o.plane.Current(cctx)
	if err != nil {
		desired = nil // unreadable now: shown as running, the default
	}
	replicas, err := o.plane.Statuses(cctx)
	cancel()
	if err != nil {
		replicas = nil
	}
	now := time.Now()
	views := make([]TargetView, 0, len(targets))
	for _, t := range targets {
		ictx, cancel := context.WithTimeout(ctx, inspectTimeout)
		st, err := o.Inspect(ictx, t)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		v := TargetView{TargetStatus: st, State: "running", Replicas: replicas[t.Name]}
		if v.Replicas == nil {
			v.Replicas = []control.ApplierStatus{}
		}
		if d, ok := desired[t.Name]; ok {
			if d.Paused {
				v.State = "paused"
			}
			v.Rewind = d.Rewind
		}
		v.Applier, v.Breaker = summarise(v.Replicas, now)
		var ahead []int
		for _, r := range v.Replicas {
			if !r.Stale(now) {
				ahead = append(ahead, r.AheadOfLog...)
			}
		}
		v.markUnknown(ahead)
		views = append(views, v)
	}
	return views, nil
}

var breakerRank = map[string]int{"closed": 1, "half-open": 2, "open": 3}

// summarise names the applier's liveness and its worst live breaker.
func summarise(replicas []control.ApplierStatus, now time.Time) (applier, breaker string) {
	applier, breaker = "none", "unknown"
	if len(replicas) > 0 {
		applier = "stale"
	}
	for _, r := range replicas {
		if r.Stale(now) {
			continue
		}
		applier = "up"
		if breakerRank[r.Breaker] > breakerRank[breaker] {
			breaker = r.Breaker
		}
	}
	return applier, breaker
}
