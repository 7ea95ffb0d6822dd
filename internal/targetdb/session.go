package targetdb

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Session is what every session sluice opens on a target runs with. The
// settings travel in the startup packet (RuntimeParams): no extra round
// trip, and no session of ours ever runs without them. Zero durations leave
// the server's setting alone.
type Session struct {
	// ApplicationName shows in pg_stat_activity; appliers use their group
	// id, operator tools "sluice-ctl".
	ApplicationName string
	// LockTimeout: no statement waits longer than this for someone else's lock.
	LockTimeout time.Duration
	// StatementTimeout bounds every statement.
	StatementTimeout time.Duration
	// IdleInTransactionTimeout makes the server end a session of ours that
	// sits in an open transaction this long, so sluice can never be the
	// stale lock holder of the incident.
	IdleInTransactionTimeout time.Duration
	// ConnectionCheckInterval is client_connection_check_interval: how
	// often a backend waiting on a lock checks that its client is still
	// there. Cancelling a context closes the socket, but only this (or the
	// timeouts) frees a backend stuck in a lock wait.
	ConnectionCheckInterval time.Duration
	// ConnectTimeout bounds connecting. Default 5s.
	ConnectTimeout time.Duration
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// apply sets s on a connection configuration.
func (s Session) apply(cc *pgx.ConnConfig) {
	settings := []struct {
		name string
		d    time.Duration
	}{
		{"lock_timeout", s.LockTimeout},
		{"statement_timeout", s.StatementTimeout},
		{"idle_in_transaction_session_timeout", s.IdleInTransactionTimeout},
		{"client_connection_check_interval", s.ConnectionCheckInterval},
	}
	for _, p := range settings {
		if p.d > 0 {
			cc.RuntimeParams[p.name] = ms(p.d)
		}
	}
	if s.ApplicationName != "" {
		cc.RuntimeParams["application_name"] = s.ApplicationName
	}
	limit := s.ConnectTimeout
	if limit <= 0 {
		limit = 5 * time.Second
	}
	if cc.ConnectTimeout == 0 || cc.ConnectTimeout > limit {
		cc.ConnectTimeout = limit
	}
}

// Connect opens one session with s, for operator tools.
func Connect(ctx context.Context, dsn string, s Session) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message can quote the DSN, password included.
		return nil, ErrBadDSN
	}
	s.apply(cc)
	return pgx.ConnectConfig(ctx, cc)
}

// NewPool returns a bounded pool of sessions with s, each with its staging
// tables. It connects lazily: a target that is down now is only noticed by
// the first use. A locked database can hold at most maxConns sessions of ours.
func NewPool(dsn string, s Session, maxConns int32) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, ErrBadDSN
	}
	if maxConns <= 0 {
		return nil, fmt.Errorf("targetdb: pool bound %d must be positive", maxConns)
	}
	pc.MaxConns = maxConns
	pc.MinConns = 0
	pc.MaxConnIdleTime = time.Minute
	pc.HealthCheckPeriod = 15 * time.Second
	s.apply(pc.ConnConfig)
	pc.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, stagingTables)
		return err
	}
	// The pool frees a session's place only after this returns: waiting
	// here for the backend to exit keeps the bound true on the server too.
	pc.BeforeClose = endSession
	return pgxpool.NewWithConfig(context.Background(), pc)
}

// backendExitWait bounds how long closing a session waits for its backend
// to exit.
const backendExitWait = 2 * time.Second

// endSession ends conn's session and waits, up to backendExitWait, until the
// server has closed the connection: its backend has exited and is gone from
// pg_stat_activity. Closing without waiting (what pgx does) lets a pool
// open the next session while the last one's backend still runs, and a
// pool of n is briefly n+1 sessions on the server. A session that is busy
// or already closed is left to pgx.
func endSession(conn *pgx.Conn) {
	pg := conn.PgConn()
	if pg.IsClosed() || pg.IsBusy() {
		return
	}
	pg.Frontend().Send(&pgproto3.Terminate{})
	if err := pg.Frontend().Flush(); err != nil {
		return
	}
	nc := pg.Conn()
	if err := nc.SetReadDeadline(time.Now().Add(backendExitWait)); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, nc) // until EOF: the backend closed its end as it exited
}

// CloseIdle closes every idle session of pool, as pgxpool's Reset does, but
// each keeps its place in the pool until its backend has exited (Reset
// frees the places at once, so new sessions can start beside backends that
// are still there). It does not wait: the sessions end in the background,
// and the pool's Close waits for them.
func CloseIdle(pool *pgxpool.Pool) {
	for _, c := range pool.AcquireAllIdle(context.Background()) {
		go func() {
			endSession(c.Conn())
			_ = c.Conn().Close(context.Background())
			c.Release() // closed: the pool destroys it and frees its place
		}()
	}
}
