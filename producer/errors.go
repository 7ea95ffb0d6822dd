package producer

import "errors"

// ErrInvalidConfig is wrapped by Config.Validate, naming the field at fault.
var ErrInvalidConfig = errors.New("invalid producer configuration")
