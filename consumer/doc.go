// Package consumer is the applier: one Applier per target PostgreSQL
// cluster, reading the events topic as the consumer group
// sluice-apply-<target> and applying it to that cluster idempotently. It
// owns group membership, the partition workers, the batch bisection, the
// breaker, lag measurement, DLQ writes and the replica's published status;
// what a batch does in the database is package targetdb's, and what
// operators ask is package control's.
//
// Each assigned partition gets its own worker. A worker starts at the offset
// recorded in the target's sluice_offsets table (the database, not Kafka, is
// the truth about what was applied), gathers a batch (size or linger,
// whichever comes first) and applies it in one short transaction with the
// partition's offsets row: straight into the ledger while the partition's
// batches are all new (targetdb.ApplyNew), else through a staging table and
// INSERT … ON CONFLICT DO NOTHING (targetdb.Apply). The group offset is
// committed to Kafka after that, once a second, for visibility only.
// At-least-once delivery plus an idempotent apply gives each event's effect
// exactly once.
//
// Errors are classified once (targetdb.Classify): retryable ones (locks,
// timeouts, lost connections, failover) keep the batch and retry it with
// jittered exponential backoff, fetching nothing meanwhile, so a sick
// database becomes lag on its target and nothing else; permanent ones (the
// event's own data) are isolated by splitting the batch, and the one
// offending record goes to the dead-letter topic sluice.dlq.<target> while
// the rest are applied.
//
//	a, err := consumer.New(consumer.Config{Target: "a", Cluster: cluster, DSN: dsn})
//	if err != nil { … }
//	err = a.Run(ctx) // returns after ctx ends and the in-flight batch is done
package consumer
