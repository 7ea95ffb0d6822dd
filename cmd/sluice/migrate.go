package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/schema"
)

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("migrate", "migrate (--target NAME | --all) [--config FILE]", stderr)
	name := fs.String("target", "", "the target to migrate")
	all := fs.Bool("all", false, "migrate every configured target")
	lockTimeout := fs.Duration("lock-timeout", 5*time.Second, "the longest any step may wait for a lock before the migration fails (never queue behind a long transaction)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*name == "") == !*all {
		fs.Usage()
		return fmt.Errorf("%w: give exactly one of --target NAME or --all", errUsage)
	}
	cfg, err := loadConfig(*cfgPath, os.Getenv)
	if err != nil {
		return err
	}
	targets := cfg.Targets
	if !*all {
		t, err := cfg.target(*name)
		if err != nil {
			return err
		}
		targets = []targetConfig{t}
	}
	for _, t := range targets {
		want := t.SchemaVersion
		if want == 0 {
			want = schema.LatestVersion()
		}
		var own []schema.Migration
		if t.Migrations != "" {
			if own, err = schema.ReadMigrations(os.DirFS(cfg.path(t.Migrations)), "."); err != nil {
				return fmt.Errorf("%w: targets[%s].migrations: %v", errConfig, t.Name, err)
			}
		}
		if err := migrateTarget(ctx, t, want, own, *lockTimeout, stdout); err != nil {
			return fmt.Errorf("target %s: %w", t.Name, err)
		}
	}
	return nil
}

// migrateTarget brings t to sluice's schema version want, then applies
// every migration of its own (own), tracked apart.
func migrateTarget(ctx context.Context, t targetConfig, want int, own []schema.Migration, lockTimeout time.Duration, stdout io.Writer) error {
	cc, err := pgx.ParseConfig(t.DSN)
	if err != nil {
		return fmt.Errorf("%w: targets[%s].dsn cannot be parsed", errConfig, t.Name)
	}
	cc.RuntimeParams["application_name"] = "sluice-migrate"
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cc)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	applied, err := schema.Migrate(ctx, conn, want, schema.MigrateOptions{LockTimeout: lockTimeout})
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "target %s: already at schema version %d\n", t.Name, want)
	} else {
		fmt.Fprintf(stdout, "target %s: applied %v, now at schema version %d\n", t.Name, applied, want)
	}
	if len(own) == 0 {
		return nil
	}
	last := own[len(own)-1].Version
	applied, err = schema.MigrateSet(ctx, conn, schema.TargetSet, own, last, schema.MigrateOptions{LockTimeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("its own migrations (%s): %w", t.Migrations, err)
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "target %s: its own tables already at version %d\n", t.Name, last)
	} else {
		fmt.Fprintf(stdout, "target %s: its own tables: applied %v, now at version %d\n", t.Name, applied, last)
	}
	return nil
}
