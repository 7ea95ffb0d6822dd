package kafkaadmin

// The names sluice gives to Kafka objects. Every other package spells them
// through these, never as literals.
const (
	// EventsTopic is the default events topic: the log every target applies.
	EventsTopic = "sluice.events"
	// ControlTopic is the compacted topic of each target's desired state,
	// keyed by target name.
	ControlTopic = "sluice.control"
	// StatusTopic is the compacted topic where every applier replica
	// publishes its live status, keyed by target and replica.
	StatusTopic = "sluice.status"
)

// DLQTopic is the dead-letter topic of a target.
func DLQTopic(target string) string { return "sluice.dlq." + target }

// GroupID is the consumer group of a target's appliers. It is also the
// application_name of their database sessions, so that operators (and
// `sluice ctl status`) can tell them apart in pg_stat_activity.
func GroupID(target string) string { return "sluice-apply-" + target }
