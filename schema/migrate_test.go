package schema

import "testing"

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
