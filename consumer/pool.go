package consumer

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// stagingTable is created once per session. It deliberately does not use
// LIKE sluice_events: creating it must not need a lock on the real table,
// which may be exactly what someone else is holding.
const stagingTable = `CREATE TEMP TABLE IF NOT EXISTS sluice_staging (
	source text, id text, type text, subject text, time timestamptz,
	datacontenttype text, dataschema text, data jsonb, data_base64 bytea,
	extensions jsonb, kafka_partition int, kafka_offset bigint
) ON COMMIT DELETE ROWS`

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// newPool builds the target's bounded pool. The session timeouts travel in
// the startup packet (RuntimeParams): no extra round trip, and no session of
// ours ever runs without them.
func newPool(c Config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(c.DSN)
	if err != nil {
		// pgx's message can quote the DSN, password included: say only where.
		return nil, fmt.Errorf("%w: targets[%s].dsn cannot be parsed", ErrInvalidConfig, c.Target)
	}
	pc.MaxConns = c.MaxConns
	pc.MinConns = 0
	pc.MaxConnIdleTime = time.Minute
	pc.HealthCheckPeriod = 15 * time.Second
	if pc.ConnConfig.ConnectTimeout == 0 || pc.ConnConfig.ConnectTimeout > 5*time.Second {
		pc.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	rp := pc.ConnConfig.RuntimeParams
	rp["application_name"] = "sluice-apply-" + c.Target
	rp["lock_timeout"] = ms(c.LockTimeout)
	rp["statement_timeout"] = ms(c.StatementTimeout)
	rp["idle_in_transaction_session_timeout"] = ms(c.IdleInTransactionTimeout)
	rp["client_connection_check_interval"] = ms(c.ConnectionCheckInterval)
	pc.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, stagingTable)
		return err
	}
	return pgxpool.NewWithConfig(context.Background(), pc)
}
