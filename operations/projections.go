package operations

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/control"
	"github.com/sluicehq/sluice/internal/targetdb"
)

// ProjectionView is one projection of a target as operators see it: its
// definition and what each live replica reports about it.
type ProjectionView struct {
	Name     string                              `json:"name"`
	Types    []string                            `json:"types"`
	Rebuild  bool                                `json:"rebuildable"`
	Replicas map[string]control.ProjectionStatus `json:"replicas"`
}

// Projections lists a target's projections with what its replicas report.
func (o *Ops) Projections(ctx context.Context, name string) ([]ProjectionView, error) {
	t, err := o.Target(name)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, controlReadTimeout)
	defer cancel()
	statuses, err := o.plane.Statuses(cctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []ProjectionView
	for _, n := range t.Projections.Names() {
		p, _ := t.Projections.Get(n)
		v := ProjectionView{Name: n, Types: p.Types, Rebuild: p.Reset != "", Replicas: map[string]control.ProjectionStatus{}}
		for _, r := range statuses[t.Name] {
			if r.Stale(now) {
				continue
			}
			for _, ps := range r.Projections {
				if ps.Name == n {
					v.Replicas[r.Replica] = ps
				}
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// projectionSession runs dry runs and rebuilds: statements may be long, a
// lock wait (the applier's batch in flight) is bounded.
var projectionSession = targetdb.Session{
	ApplicationName: "sluice-ctl", LockTimeout: 30 * time.Second, StatementTimeout: 5 * time.Minute,
	IdleInTransactionTimeout: time.Minute, ConnectionCheckInterval: time.Second,
}

// DryRunProjections runs each projection of the target over its last n
// ledger events in a transaction that is rolled back, and reports what each
// would have changed.
func (o *Ops) DryRunProjections(ctx context.Context, name string, n int) ([]targetdb.ProjectionResult, error) {
	t, err := o.Target(name)
	if err != nil {
		return nil, err
	}
	conn, err := targetdb.Connect(ctx, t.DSN, projectionSession)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", t.Name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return targetdb.DryRun(ctx, conn, t.Projections, n)
}

// Rebuild recomputes a target's projection (or every rebuildable one, when
// only is empty) from its own ledger; see targetdb.Rebuild.
func (o *Ops) Rebuild(ctx context.Context, name, only string, progress func(targetdb.RebuildProgress)) (int64, error) {
	t, err := o.Target(name)
	if err != nil {
		return 0, err
	}
	if only != "" {
		if _, ok := t.Projections.Get(only); !ok {
			return 0, fmt.Errorf("%w: target %s has no projection %q (it has %v)", ErrUnknownProjection, t.Name, only, t.Projections.Names())
		}
	}
	conn, err := targetdb.Connect(ctx, t.DSN, projectionSession)
	if err != nil {
		return 0, fmt.Errorf("target %s: %w", t.Name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return targetdb.Rebuild(ctx, conn, t.Projections, only, 5000, progress)
}
