// Package control owns the contracts between operators and appliers that
// travel through Kafka:
//
//   - sluice.control, compacted, keyed by target: the desired state of each
//     target (paused, the last rewind asked for), written by `sluice ctl` and
//     the admin API, followed by every applier replica;
//   - sluice.status, compacted, keyed by target and replica: what each
//     applier replica reports about itself (breaker, partitions, last
//     error), read by `sluice ctl status` and the status page, so that
//     status is right however many replicas a target has.
//
// It encodes both, reads them to the end, follows the control topic, and
// resolves a rewind request into offsets per partition.
//
//	plane := control.New(cluster)
//	defer plane.Close()
//	changed, err := plane.SetPaused(ctx, "b", true, "ctl:alice@host")
//	rw, err := plane.IssueRewind(ctx, "b", "sluice.events", control.RewindRequest{ToOffset: "earliest"}, "ctl:alice@host")
package control
