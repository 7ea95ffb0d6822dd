package operations

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/control"
	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/internal/targetdb"
)

// ErrUnknownTarget is returned (wrapped) when a request names a target that
// is not configured.
var ErrUnknownTarget = errors.New("unknown target")

// ErrUnknownProjection is returned (wrapped) when a request names a
// projection its target does not have.
var ErrUnknownProjection = errors.New("unknown projection")

// Target is one configured target.
type Target struct {
	Name string
	DSN  string
	// Projections are the target's projections: a DLQ replay applies
	// through them as the applier does.
	Projections *targetdb.Projections
	// Facts is the target's facts query: canonical rows, first column the
	// key, that another target's facts query gives from its own schema
	// when both hold the same facts. Empty: none.
	Facts string
}

// Config is what Ops works on.
type Config struct {
	// Cluster reaches Kafka. Required.
	Cluster *kafkaadmin.Cluster
	// EventsTopic is the events topic. Default "sluice.events".
	EventsTopic string
	// Targets are the configured targets, in display order.
	Targets []Target
}

// Ops answers operators' questions and carries out their requests. Safe for
// concurrent use; Close it when done.
type Ops struct {
	cluster *kafkaadmin.Cluster
	topic   string
	targets []Target
	plane   *control.Plane
}

// New returns an Ops for cfg.
func New(cfg Config) *Ops {
	if cfg.EventsTopic == "" {
		cfg.EventsTopic = kafkaadmin.EventsTopic
	}
	return &Ops{cluster: cfg.Cluster, topic: cfg.EventsTopic, targets: cfg.Targets, plane: control.New(cfg.Cluster)}
}

// Close releases the control plane's writers.
func (o *Ops) Close() error { return o.plane.Close() }

// Control is the control plane, for pause, resume and rewind.
func (o *Ops) Control() *control.Plane { return o.plane }

// EventsTopic is the events topic operated on.
func (o *Ops) EventsTopic() string { return o.topic }

// Targets returns the configured targets.
func (o *Ops) Targets() []Target { return append([]Target(nil), o.targets...) }

// Target returns the configured target called name, or an error naming
// the configured ones.
func (o *Ops) Target(name string) (Target, error) {
	names := make([]string, len(o.targets))
	for i, t := range o.targets {
		if t.Name == name {
			return t, nil
		}
		names[i] = t.Name
	}
	return Target{}, fmt.Errorf("%w %q (configured: %s)", ErrUnknownTarget, name, strings.Join(names, ", "))
}
