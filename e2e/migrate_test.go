package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/schema"
)

// TestMigrationFailsFastBehindALock holds a lock that the migration needs,
// the way a long transaction did in the incident: migrate must give up within
// its lock timeout instead of queueing (and queueing everyone behind it), and
// succeed once the lock is gone.
func TestMigrationFailsFastBehindALock(t *testing.T) {
	parallel(t)
	svc := requireServices(t)
	id := randomID()
	dsn := createDatabase(t, svc.pgA, "sluice_test_"+id)
	dir := t.TempDir()
	cfg := dir + "/sluice.yaml"
	writeFile(t, cfg, "kafka: {brokers: ["+svc.kafka+"]}\ntargets: [{name: a, dsn: '"+dsn+"'}]\n")

	ctx := context.Background()
	holder := connect(t, dsn)
	// The table the migrator records versions in, locked by an open transaction.
	mustExec(t, holder, `CREATE TABLE sluice_schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE sluice_schema_migrations IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	out, err := exec.Command(sluiceBin, "migrate", "--config", cfg, "--target", "a", "--lock-timeout", "1s").CombinedOutput()
	took := time.Since(began)
	if err == nil {
		t.Fatalf("migrate succeeded behind an ACCESS EXCLUSIVE lock:\n%s", out)
	}
	if !strings.Contains(string(out), "lock timeout") {
		t.Fatalf("migrate failed, but not on its lock timeout:\n%s", out)
	}
	if took > 10*time.Second {
		t.Fatalf("migrate took %v to give up; its lock timeout is 1s", took)
	}
	t.Logf("migrate gave up after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(string(out)))

	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(sluiceBin, "migrate", "--config", cfg, "--target", "a").CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("now at schema version %d", schema.LatestVersion())) {
		t.Fatalf("migrate after the lock was released: %v\n%s", err, out)
	}
}
