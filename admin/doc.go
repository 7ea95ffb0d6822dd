// Package admin owns the operator's view of a sluice deployment and the
// actions on it, as served over HTTP by `sluice ingest`: status across
// targets (desired state, applier, breaker, lag, blocking sessions), pause,
// resume, rewind, dead letters and verify, behind an admin token that is
// never an ingest key; and the status page at /ui, whose assets are
// embedded. `sluice ctl` uses the same Status.
//
//	h, err := admin.NewHandler(admin.Config{Brokers: b, Topic: t, Targets: ts, Token: tok})
//	mux.Handle("/v1/admin/", h)
//	mux.Handle("/ui/", h)
package admin
