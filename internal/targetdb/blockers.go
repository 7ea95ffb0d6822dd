package targetdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Blocker is a session in a chain of lock waits that holds up an applier:
// one its sessions wait for, one that session waits for, and so on.
type Blocker struct {
	PID         int
	User        string
	Application string
	Client      string
	// State is pg_stat_activity's: "active", "idle in transaction", …
	State     string
	Superuser bool
	// WaitsForLock is set when the session waits for a lock itself: it is
	// a link of the chain, not its end.
	WaitsForLock bool
	// XactStart and StateChange identify this transaction and how long it
	// has been in State; Now is the server's clock for both.
	XactStart   time.Time
	StateChange time.Time
	Now         time.Time
	// Locks lists the locks it holds ("RowExclusiveLock on sluice_offsets, …").
	Locks string
	// Query is its last statement, cut to 300 characters.
	Query string
}

// TransactionAge is how long its transaction has been open.
func (b Blocker) TransactionAge() time.Duration {
	if b.XactStart.IsZero() {
		return 0
	}
	return b.Now.Sub(b.XactStart)
}

// InState is how long it has been in State.
func (b Blocker) InState() time.Duration { return b.Now.Sub(b.StateChange) }

// IdleInTransaction reports a session that holds a transaction open and
// does nothing: the stale lock holder of the incident.
func (b Blocker) IdleInTransaction() bool {
	return b.State == "idle in transaction" || b.State == "idle in transaction (aborted)"
}

// blockersOf walks the chains of lock waits up from the sessions of an
// application (and from sessions seen in such a chain before, which may
// hold it up again when it next tries — but only while they are still in
// the transaction they were seen in: a pid that has moved on to another
// transaction starts no chain, or a session it now waits on, which never
// held up the application, would be taken for a blocker), 8 links deep at
// most: a deadlock is a cycle.
const blockersOf = `
WITH RECURSIVE chain(pid, depth) AS (
	SELECT bp, 1 FROM pg_stat_activity w, unnest(pg_blocking_pids(w.pid)) AS bp WHERE w.application_name = $1
	UNION
	SELECT s.p, 1 FROM unnest($2::int[], $3::timestamptz[]) AS s(p, x)
	JOIN pg_stat_activity a ON a.pid = s.p AND a.xact_start = s.x
	UNION
	SELECT bp, c.depth + 1 FROM chain c, unnest(pg_blocking_pids(c.pid)) AS bp WHERE c.depth < 8
)
SELECT a.pid, coalesce(a.usename, ''), coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'),
       coalesce(a.state, ''), coalesce(r.rolsuper, false), a.wait_event_type IS NOT DISTINCT FROM 'Lock',
       coalesce(a.xact_start, 'epoch'::timestamptz), coalesce(a.state_change, now()), now(),
       coalesce((SELECT string_agg(DISTINCT l.mode || ' on ' || coalesce(c.relname::text, l.locktype), ', ')
                 FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation
                 WHERE l.pid = a.pid AND l.granted AND l.locktype NOT IN ('virtualxid', 'transactionid')), ''),
       left(coalesce(a.query, ''), 300)
FROM (SELECT DISTINCT pid FROM chain) ch
JOIN pg_stat_activity a ON a.pid = ch.pid
LEFT JOIN pg_roles r ON r.rolname = a.usename
WHERE a.pid <> pg_backend_pid() AND a.application_name IS DISTINCT FROM $1`

// BlockersOf returns the sessions in the chains of lock waits that hold up
// the sessions named application, and the sessions of also that are still
// in the transaction they were seen in (XactStart) with theirs.
func BlockersOf(ctx context.Context, conn *pgx.Conn, application string, also []Blocker) ([]Blocker, error) {
	pids := make([]int32, len(also))
	xacts := make([]time.Time, len(also))
	for i, b := range also {
		pids[i], xacts[i] = int32(b.PID), b.XactStart
	}
	rows, err := conn.Query(ctx, blockersOf, application, pids, xacts)
	if err != nil {
		return nil, fmt.Errorf("find blocking sessions: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Blocker, error) {
		var b Blocker
		err := row.Scan(&b.PID, &b.User, &b.Application, &b.Client, &b.State, &b.Superuser, &b.WaitsForLock,
			&b.XactStart, &b.StateChange, &b.Now, &b.Locks, &b.Query)
		if b.XactStart.Unix() == 0 {
			b.XactStart = time.Time{}
		}
		return b, err
	})
}

// ErrNotPermitted is returned by EndBlocker when the role may not end the
// session: it lacks pg_signal_backend, or the session is a superuser's.
var ErrNotPermitted = errors.New("not permitted to end the session")

// EndBlocker ends b's session with pg_terminate_backend, only if it is still
// in the same transaction and has stayed idle in it since b was seen: a
// session that did anything in between is left alone. It reports whether
// the session was ended.
func EndBlocker(ctx context.Context, conn *pgx.Conn, b Blocker) (bool, error) {
	var ended bool
	err := conn.QueryRow(ctx, `
SELECT coalesce((SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE pid = $1 AND xact_start = $2 AND state_change = $3
                   AND state IN ('idle in transaction', 'idle in transaction (aborted)')), false)`,
		b.PID, b.XactStart, b.StateChange).Scan(&ended)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
		return false, fmt.Errorf("%w: %s", ErrNotPermitted, pgErr.Message)
	}
	return ended, err
}

// MissingRoles lists the predefined roles the connection's role lacks to
// act on other roles' sessions: pg_read_all_stats to see what they do
// (pg_stat_activity hides the state and query of other roles' sessions
// from anyone else) and pg_signal_backend to end them. A superuser lacks
// none. It also returns the role's name.
func MissingRoles(ctx context.Context, conn *pgx.Conn) ([]string, string, error) {
	var missing []string
	var role string
	err := conn.QueryRow(ctx, `
SELECT current_user, array_remove(ARRAY[
         CASE WHEN NOT (rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')) THEN 'pg_read_all_stats' END,
         CASE WHEN NOT (rolsuper OR pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')) THEN 'pg_signal_backend' END], NULL)
FROM pg_roles WHERE rolname = current_user`).Scan(&role, &missing)
	return missing, role, err
}
