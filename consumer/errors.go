package consumer

import "errors"

// ErrInvalidConfig is wrapped by Config.Validate, naming the field at fault.
var ErrInvalidConfig = errors.New("invalid applier configuration")

// ErrSchemaVersion is returned by Applier.Run when the target database is not
// at the schema version its configuration names: apply never guesses at a
// table's shape.
var ErrSchemaVersion = errors.New("target schema version mismatch")
