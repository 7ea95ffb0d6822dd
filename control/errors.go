package control

import "errors"

var (
	// ErrBeforeRetention is returned (wrapped) by ResolveRewind when the
	// rewind would need records that retention has already deleted.
	ErrBeforeRetention = errors.New("rewind reaches before the topic's retention")
	// ErrBadRewind is returned (wrapped) by ResolveRewind for a malformed request.
	ErrBadRewind = errors.New("bad rewind request")
)
