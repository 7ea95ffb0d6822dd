package consumer

import "errors"

// ErrInvalidConfig is wrapped by Config.Validate, naming the field at fault.
var ErrInvalidConfig = errors.New("invalid applier configuration")

// ErrSchemaVersion is returned by Applier.Run when the target database is not
// at the schema version its configuration names: apply never guesses at a
// table's shape.
var ErrSchemaVersion = errors.New("target schema version mismatch")

// errBreakerBusy is returned by breaker.do when the breaker is open or its
// one half-open probe is taken by another worker: the caller waits, and the
// refusal is not an attempt.
var errBreakerBusy = errors.New("breaker open or probing")

// ErrRetired is returned by Applier.Run when an operator retired the target
// (`sluice ctl retire`): its work is done, and it should not be restarted.
var ErrRetired = errors.New("target retired by an operator")
