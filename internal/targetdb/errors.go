package targetdb

import "errors"

// ErrBadDSN is returned by NewPool and Connect when the DSN cannot be parsed.
// It never quotes the DSN, which may hold a password.
var ErrBadDSN = errors.New("the DSN cannot be parsed")

// ErrOffsetsMoved is returned (wrapped) by Apply and Advance when the
// offsets row no longer holds the cursor's From: another owner of the
// partition, or an operator's rewind, moved it. Nothing was written; the
// writer must re-read its position. It is neither the database's fault nor
// the event's.
var ErrOffsetsMoved = errors.New("offsets row moved by another writer")
