package schema

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one schema step: sluice's own (embedded) or a target's
// (read from its migrations directory).
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns sluice's embedded migrations in version order.
func Migrations() []Migration {
	out, err := ReadMigrations(migrationFiles, "migrations")
	if err != nil {
		panic(err) // embedded at build time: cannot fail at run time
	}
	return out
}

// ReadMigrations reads the files NNNN_name.sql of dir in fsys, in version
// order. Versions must run 1, 2, 3, … without gaps or repeats.
func ReadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		name := strings.TrimSuffix(e.Name(), ".sql")
		num, rest, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 || rest == "" {
			return nil, fmt.Errorf("%w: %q is not named NNNN_name.sql", ErrBadMigration, e.Name())
		}
		body, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: rest, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("%w: version %d follows %d; versions run 1, 2, 3, … without gaps", ErrBadMigration, m.Version, i)
		}
	}
	return out, nil
}

// LatestVersion is the highest version the embedded migrations reach.
func LatestVersion() int {
	m := Migrations()
	return m[len(m)-1].Version
}

// MigrateOptions tune Migrate. The zero value works.
type MigrateOptions struct {
	// LockTimeout bounds every lock wait of every step, so a migration
	// fails fast instead of queueing behind a long transaction (and making
	// every later query queue behind it). Default 5s.
	LockTimeout time.Duration
	// StatementTimeout bounds each statement. Default 5m.
	StatementTimeout time.Duration
}

// Migrate brings the database on conn to version target of sluice's own
// migrations, applying each missing step in its own transaction. It returns
// the versions it applied. Concurrent Migrate calls on one database
// serialise on an advisory lock, which is itself bounded by LockTimeout.
func Migrate(ctx context.Context, conn *pgx.Conn, target int, opts MigrateOptions) ([]int, error) {
	return MigrateSet(ctx, conn, OwnSet, Migrations(), target, opts)
}

// A Set names the table that records which of a set of migrations were
// applied. sluice's own set and each target's own are tracked apart, so a
// target's application schema has versions of its own.
type Set string

// The migration sets.
const (
	// OwnSet is sluice's own tables (sluice_events, sluice_offsets).
	OwnSet Set = "sluice_schema_migrations"
	// TargetSet is a target's own tables, read from its migrations
	// directory: what its projections write.
	TargetSet Set = "sluice_target_migrations"
)

// MigrateSet brings the database on conn to version target of migrations,
// recorded in set's table; see Migrate.
func MigrateSet(ctx context.Context, conn *pgx.Conn, set Set, migrations []Migration, target int, opts MigrateOptions) ([]int, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 5 * time.Second
	}
	if opts.StatementTimeout <= 0 {
		opts.StatementTimeout = 5 * time.Minute
	}
	last := 0
	if len(migrations) > 0 {
		last = migrations[len(migrations)-1].Version
	}
	if target < 0 || target > last || (target == 0 && set == OwnSet) {
		return nil, fmt.Errorf("%w: %d (%s knows 1 to %d)", ErrUnknownVersion, target, set, last)
	}
	setTimeouts := fmt.Sprintf("SET LOCAL lock_timeout = %d; SET LOCAL statement_timeout = %d",
		opts.LockTimeout.Milliseconds(), opts.StatementTimeout.Milliseconds())
	table := pgx.Identifier{string(set)}.Sanitize()

	var applied []int
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, setTimeouts); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (
			version    int PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", set, err)
	}
	for _, m := range migrations {
		if m.Version > target {
			break
		}
		done := false
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, setTimeouts); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, string(set)); err != nil {
				return fmt.Errorf("wait for other migrations: %w", err)
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE version = $1`, m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				done = true
				return nil
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO `+table+` (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
		}
		if !done {
			applied = append(applied, m.Version)
		}
	}
	return applied, nil
}

// CurrentVersion returns the highest version applied to the database on q,
// or 0 when it has never been migrated.
func CurrentVersion(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int, error) {
	var v *int
	err := q.QueryRow(ctx, `SELECT max(version) FROM sluice_schema_migrations`).Scan(&v)
	if err != nil {
		var pgErr interface{ SQLState() string }
		if errors.As(err, &pgErr) && pgErr.SQLState() == "42P01" { // undefined_table
			return 0, nil
		}
		return 0, err
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

// FirstMigratedAt returns when the database on q was first migrated: the
// moment it became a sluice target. Operator requests older than that (a
// rewind issued before the target existed) are not for it.
func FirstMigratedAt(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (time.Time, error) {
	var t *time.Time
	if err := q.QueryRow(ctx, `SELECT min(applied_at) FROM sluice_schema_migrations`).Scan(&t); err != nil {
		return time.Time{}, err
	}
	if t == nil {
		return time.Time{}, nil
	}
	return *t, nil
}
