package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
)

// ApplierStatus is what one applier replica reports about itself in
// sluice.status, every few seconds and on every change of its breaker. It
// is the contract between appliers and operator tools: they never scrape an
// applier's /metrics.
type ApplierStatus struct {
	Target  string `json:"target"`
	Replica string `json:"replica"`
	// Breaker is closed, half-open or open.
	Breaker string `json:"breaker"`
	// Paused is whether the replica obeys a pause now.
	Paused bool `json:"paused"`
	// Partitions are those the replica owns now.
	Partitions []int `json:"partitions"`
	// BatchLimit is the most records one transaction carries now: lower
	// than the configured batch size while the database is slow.
	BatchLimit int `json:"batch_limit"`
	// AheadOfLog lists the partitions whose recorded position lies beyond
	// the log's end (the topic was recreated or truncated): they apply
	// nothing until an operator rewinds them.
	AheadOfLog []int `json:"ahead_of_log,omitempty"`
	// Projections are the target's projections as this replica ran them.
	Projections []ProjectionStatus `json:"projections,omitempty"`
	// BlockerPolicy describes the replica's policy for sessions that stall
	// the target, with a warning when it cannot act; empty when off.
	BlockerPolicy string `json:"blocker_policy,omitempty"`
	// BlockerPolicyCannotAct says why the policy cannot see or end other
	// roles' sessions (the roles its database role lacks, with the GRANT
	// that fixes it); empty when it can, or when it is off.
	BlockerPolicyCannotAct string `json:"blocker_policy_cannot_act,omitempty"`
	// Blockers is what the policy did lately, newest first.
	Blockers []BlockerAction `json:"blockers,omitempty"`
	// LastError is the last failure applying to the target, while it lasts:
	// cleared by the next success.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	StartedAt   time.Time  `json:"started_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	// Every is how often the replica reports: a report older than three
	// times this means the replica is gone or stuck.
	Every time.Duration `json:"every_ns"`
}

// BlockerAction is what a replica's blocker policy did about one session
// that stalled its target.
type BlockerAction struct {
	// Action is "ended" (terminated), "reported" (report mode: it would
	// have been ended), "spared" (a guard rail kept it: see Why) or
	// "not permitted" (the role may not end it).
	Action         string        `json:"action"`
	Why            string        `json:"why,omitempty"`
	At             time.Time     `json:"at"`
	PID            int           `json:"pid"`
	User           string        `json:"user"`
	Application    string        `json:"application"`
	Client         string        `json:"client"`
	State          string        `json:"state"`
	TransactionAge time.Duration `json:"transaction_age_ns"`
	Locks          string        `json:"locks"`
	Query          string        `json:"query"`
}

// ProjectionStatus is what one projection did on one replica.
type ProjectionStatus struct {
	Name string `json:"name"`
	// Rows is how many rows it affected since the replica started.
	Rows         int64         `json:"rows"`
	LastDuration time.Duration `json:"last_duration_ns"`
	// LastError is its last failure, while it lasts: a broken projection
	// (a missing column or table) stalls its target until it is fixed.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitempty"`
}

// Stale reports whether the replica has missed three reports by now.
func (s ApplierStatus) Stale(now time.Time) bool {
	every := s.Every
	if every <= 0 {
		every = 2 * time.Second
	}
	return now.Sub(s.UpdatedAt) > 3*every
}

func statusKey(target, replica string) string { return target + "/" + replica }

// PublishStatus writes s, keyed by its target and replica.
func (p *Plane) PublishStatus(ctx context.Context, s ApplierStatus) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return p.status.WriteMessages(ctx, kafka.Message{Key: []byte(statusKey(s.Target, s.Replica)), Value: b})
}

// ForgetStatus writes the tombstone of a replica that stops cleanly.
func (p *Plane) ForgetStatus(ctx context.Context, target, replica string) error {
	return p.status.WriteMessages(ctx, kafka.Message{Key: []byte(statusKey(target, replica))})
}

// Statuses reads sluice.status to its end and returns each target's live
// replicas, sorted by replica. No status topic yet means no replica has run.
func (p *Plane) Statuses(ctx context.Context) (map[string][]ApplierStatus, error) {
	latest := map[string]ApplierStatus{}
	err := p.cluster.ReadToEnd(ctx, kafkaadmin.StatusTopic, 0, func(m kafka.Message) {
		if m.Value == nil {
			delete(latest, string(m.Key))
			return
		}
		var s ApplierStatus
		if json.Unmarshal(m.Value, &s) == nil && strings.HasPrefix(string(m.Key), s.Target+"/") {
			latest[string(m.Key)] = s
		}
	})
	if err != nil && !errors.Is(err, kafkaadmin.ErrNoTopic) {
		return nil, fmt.Errorf("read %s: %w", kafkaadmin.StatusTopic, err)
	}
	out := map[string][]ApplierStatus{}
	for _, s := range latest {
		out[s.Target] = append(out[s.Target], s)
	}
	for _, list := range out {
		sort.Slice(list, func(i, j int) bool { return list[i].Replica < list[j].Replica })
	}
	return out, nil
}
