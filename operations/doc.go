// Package operations owns what operators run against a sluice deployment:
// the status of each target (desired state, live applier replicas and their
// breakers, lag per partition, apply rate, and the database session that
// blocks it); verify (two targets compared event by event, optionally up to
// the position both have passed); the dead letters of a target (list,
// replay); its projections (list, dry run, rebuild from the ledger); and the
// cutover of a target to a new cluster (backfill from another target's
// ledger, cutover-check, retire). `sluice ctl`, `sluice backfill` and the
// admin HTTP API are its faces; none of them imports the applier.
//
//	ops := operations.New(operations.Config{Cluster: cluster, Targets: targets})
//	defer ops.Close()
//	views, err := ops.Status(ctx)
//	res, err := ops.Verify(ctx, operations.VerifyRequest{A: "a", B: "b"})
//	checks, err := ops.CutoverCheck(ctx, "a", "c", 100)
package operations
