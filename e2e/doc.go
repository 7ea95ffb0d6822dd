// Package e2e holds the end-to-end tests of sluice: they build the sluice
// binary and run ingest, appliers and loadgen as real processes against the
// real Kafka broker and PostgreSQL clusters of deploy/local (never mocks),
// then check what each target database holds.
//
// The services are found through environment variables that `make test`
// sets (see `deploy/local/stack env`): SLUICE_TEST_KAFKA, SLUICE_TEST_PG_A,
// SLUICE_TEST_PG_B and SLUICE_STACK. Without them the tests skip, naming the
// missing variable; with CI=true a missing variable fails them instead.
//
// Each test gets its own topic, target names and databases, so tests never
// see each other's events and can run beside a demo on the same stack.
package e2e
