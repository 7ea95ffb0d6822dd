// Package consumer owns the apply side of sluice: one Applier per target
// PostgreSQL cluster, reading the events topic as the consumer group
// sluice-apply-<target> and applying it to that cluster idempotently.
//
// Each assigned partition gets its own worker. A worker starts at the offset
// recorded in the target's sluice_offsets table (the database, not Kafka, is
// the truth about what was applied), gathers a batch (size or linger,
// whichever comes first) and applies it in one short transaction: COPY into a
// session-local staging table, INSERT … SELECT … ON CONFLICT (source, id) DO
// NOTHING, and the sluice_offsets row. Only after that commit is the group
// offset committed to Kafka. At-least-once delivery plus an idempotent apply
// gives each event's effect exactly once.
//
// Errors are classified once ([Classify]): retryable ones (locks, timeouts,
// lost connections, failover) keep the batch and retry it with jittered
// exponential backoff, fetching nothing meanwhile, so a sick database becomes
// lag on its target and nothing else; permanent ones (the event's own data)
// are isolated by splitting the batch, and the one offending record goes to
// the dead-letter topic sluice.dlq.<target> while the rest are applied.
//
//	a, err := consumer.New(consumer.Config{Target: "a", Brokers: brokers, DSN: dsn})
//	if err != nil { … }
//	err = a.Run(ctx) // returns after ctx ends and the in-flight batch is done
package consumer
