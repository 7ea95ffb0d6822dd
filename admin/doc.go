// Package admin serves the operator's API over HTTP, on `sluice ingest`:
// status across targets (desired state, applier replicas, breakers, lag,
// blocking sessions), pause, resume, rewind, dead letters and verify, behind
// an admin token that is never an ingest key; and the status page at /ui,
// whose assets are embedded. It is a face of package operations, as
// `sluice ctl` is the other; it never imports the applier.
//
//	h, err := admin.NewHandler(admin.Config{Ops: ops, Token: tok, IsIngestKey: ingest.HoldsKey})
//	mux.Handle("/v1/admin/", h)
//	mux.Handle("/ui/", h)
package admin
