// Package operations owns what operators run against a sluice deployment:
// the status of each target (desired state, live applier replicas and their
// breakers, lag per partition, apply rate, and the database session that
// blocks it), verify (two targets compared bucket by bucket), and the dead
// letters of a target (list, replay). `sluice ctl` and the admin HTTP API
// are two faces of it; neither imports the applier.
//
//	ops := operations.New(operations.Config{Cluster: cluster, Targets: targets})
//	defer ops.Close()
//	views, err := ops.Status(ctx)
//	res, err := ops.Verify(ctx, operations.VerifyRequest{A: "a", B: "b"})
package operations
