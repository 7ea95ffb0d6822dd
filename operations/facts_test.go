package operations

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/testenv"
)

// TestFactsCompareTwoSchemasByContent: the shop example's v1 and v2 hold the
// same customers in different tables; their facts queries give the same
// rows, and one customer changed in B alone is named with both rows.
func TestFactsCompareTwoSchemasByContent(t *testing.T) {
	ctx := context.Background()
	read := func(path string) string {
		b, err := os.ReadFile("../deploy/examples/shop/" + path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	dsnA, dsnB := testenv.Database(t), testenv.Database(t)
	a, b := testenv.Conn(t, dsnA), testenv.Conn(t, dsnB)
	if _, err := a.Exec(ctx, read("v1/migrations/0001_customers.sql")+`;
		INSERT INTO customers SELECT 'c' || i, 'name ' || i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'e' || i END, i FROM generate_series(1, 3000) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(ctx, read("v2/migrations/0001_clients.sql")+`;
		INSERT INTO clients SELECT 'c' || i, 'name ' || i, i FROM generate_series(1, 3000) i;
		INSERT INTO client_emails SELECT 'c' || i, 'e' || i FROM generate_series(1, 3000) i WHERE i % 3 <> 0`); err != nil {
		t.Fatal(err)
	}
	ops := New(Config{Cluster: testenv.Kafka(t), Targets: []Target{{Name: "a", DSN: dsnA, Facts: read("v1/facts.sql")}, {Name: "b", DSN: dsnB, Facts: read("v2/facts.sql")}}})
	res, err := ops.CompareFacts(ctx, "a", "b", 5)
	if err != nil || !res.Same() || res.RowsA != 3000 || res.RowsB != 3000 {
		t.Fatalf("the same facts in two schemas: %+v, %v", res, err)
	}
	if _, err := b.Exec(ctx, `UPDATE client_emails SET email = 'changed' WHERE client_id = 'c1000'; DELETE FROM client_emails WHERE client_id = 'c2000';
		INSERT INTO clients VALUES ('c9999', 'only b', 1)`); err != nil {
		t.Fatal(err)
	}
	res, err = ops.CompareFacts(ctx, "a", "b", 5)
	if err != nil || res.Differ != 2 || res.OnlyB != 1 || res.OnlyA != 0 || len(res.Keys) != 3 {
		t.Fatalf("after two changes and one new row in B: %+v, %v", res, err)
	}
	summary := res.Summary("a", "b")
	for _, want := range []string{`c1000: a has "(c1000,\"name 1000\",e1000,1000)", b has "(c1000,\"name 1000\",changed,1000)"`, "c2000", "c9999"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary %q does not name %s", summary, want)
		}
	}
	if _, err := New(Config{Cluster: testenv.Kafka(t), Targets: []Target{{Name: "a", DSN: dsnA}, {Name: "b", DSN: dsnB}}}).CompareFacts(ctx, "a", "b", 1); err == nil {
		t.Error("compared targets that declare no facts query")
	}
}
