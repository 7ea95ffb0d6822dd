package schema

import (
	"errors"
	"testing"
	"testing/fstest"
)

func TestMigrationsAreNumberedWithoutGaps(t *testing.T) {
	ms := Migrations()
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}
	for i, m := range ms {
		if m.Version != i+1 {
			t.Fatalf("migration %d has version %d; versions must run 1, 2, 3, … without gaps", i, m.Version)
		}
		if m.SQL == "" || m.Name == "" {
			t.Fatalf("migration %d is empty or unnamed", m.Version)
		}
	}
	if LatestVersion() != len(ms) {
		t.Fatalf("LatestVersion() = %d, want %d", LatestVersion(), len(ms))
	}
}

func TestReadMigrationsRefusesGapsAndBadNames(t *testing.T) {
	ok := fstest.MapFS{"0001_a.sql": {Data: []byte("SELECT 1")}, "0002_b.sql": {Data: []byte("SELECT 2")}, "README.md": {Data: []byte("x")}}
	ms, err := ReadMigrations(ok, ".")
	if err != nil || len(ms) != 2 || ms[1].Name != "b" {
		t.Fatalf("a good directory: %+v, %v", ms, err)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"a gap":          {"0001_a.sql": {}, "0003_c.sql": {}},
		"a repeat":       {"0001_a.sql": {}, "0001_b.sql": {}},
		"a bad name":     {"first.sql": {}},
		"a missing name": {"0001_.sql": {}},
	} {
		if _, err := ReadMigrations(fsys, "."); !errors.Is(err, ErrBadMigration) {
			t.Errorf("%s: %v, want ErrBadMigration", name, err)
		}
	}
}
