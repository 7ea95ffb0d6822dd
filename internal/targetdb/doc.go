// Package targetdb owns sluice's side of a target PostgreSQL database: the
// settings every sluice session runs with, the bounded pool of an applier,
// the columns of the sluice_events ledger, the one transaction that applies
// a batch (ledger rows and the sluice_offsets row together), the offsets
// rows themselves, and the classification of what went wrong.
//
// The applier (package consumer) and the operator tools (package
// operations: DLQ replay) both write through Apply, so an event reaches a
// target the same way whichever path brings it.
//
//	pool, err := targetdb.NewPool(dsn, targetdb.Session{ApplicationName: name, LockTimeout: 2 * time.Second}, 2)
//	recs := []targetdb.Record{targetdb.Decode(msg)}
//	inserted, err := targetdb.Apply(ctx, pool, recs, targetdb.CursorAfter(topic, msg))
//	if targetdb.Classify(err) == targetdb.Permanent { /* the event's fault: dead-letter it */ }
package targetdb
