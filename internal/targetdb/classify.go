package targetdb

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluicehq/sluice/schema"
)

// Class says what to do about an error from applying a batch.
type Class int

const (
	// Retryable errors are the database's (or the network's) fault: keep
	// the batch, back off, try again. They count toward the breaker.
	Retryable Class = iota
	// Permanent errors are one event's fault: retrying cannot help. The
	// event is isolated and dead-lettered; the breaker does not count it.
	Permanent
)

// String names the class.
func (c Class) String() string {
	if c == Permanent {
		return "permanent"
	}
	return "retryable"
}

// Classify decides, once and at the boundary, whether err is the database's
// fault or the event's. Anything unknown is Retryable: stalling a target is
// visible (lag, alerts) and recoverable, while dead-lettering good events on
// a transient fault would lose them to that target.
func Classify(err error) Class {
	if errors.Is(err, schema.ErrInvalidEvent) {
		return Permanent
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return classifySQLState(pgErr.Code)
	}
	return Retryable
}

func classifySQLState(code string) Class {
	switch {
	case strings.HasPrefix(code, "22"): // data exception: bad value, bad JSON, \u0000 in jsonb
		return Permanent
	case strings.HasPrefix(code, "23"): // integrity: CHECK, NOT NULL, FK on this event's row
		return Permanent
	case code == "54000": // program_limit_exceeded: e.g. a key too large for its index
		return Permanent
	}
	return Retryable
}

// IsSlow reports a failure that says the database is slow rather than
// blocked or broken: a statement that outran statement_timeout (57014) or
// a transaction that outran its deadline. A smaller batch may get through
// where this one did not. A lock timeout (55P03) is not slowness: a smaller
// batch waits on the same lock.
func IsSlow(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "57014"
	}
	return errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)
}

// IsLockWait reports a failure that says another session's lock held the
// statement up: lock_timeout (55P03), a deadlock (40P01), or
// statement_timeout (57014), which a lock wait longer than it ends too.
func IsLockWait(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "55P03", "40P01", "57014":
			return true
		}
	}
	return false
}
