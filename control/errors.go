package control

import "errors"

var (
	// ErrBeforeRetention is returned (wrapped) by ResolveRewind when the
	// rewind would need records that retention has already deleted.
	ErrBeforeRetention = errors.New("rewind reaches before the topic's retention")
	// ErrBadRewind is returned (wrapped) by ResolveRewind for a malformed request.
	ErrBadRewind = errors.New("bad rewind request")
	// ErrNotAccepted is returned (wrapped) by SetPaused, SetRetired,
	// IssueRewind and IssueSkip when the change was written but not read
	// back as accepted: the caller must not report it done.
	ErrNotAccepted = errors.New("the change was written but not read back as the accepted state")
	// ErrUnrepaired is returned (wrapped, with ErrConflict) by SetPaused,
	// SetRetired, IssueRewind and IssueSkip when their change lost a race
	// and the accepted state could not be written again after it: until
	// the next read or change repairs it, the newest record of the target
	// is the lost change, which compaction would leave to restarted
	// replicas.
	ErrUnrepaired = errors.New("a lost change is the target's newest record and was not superseded")
)
