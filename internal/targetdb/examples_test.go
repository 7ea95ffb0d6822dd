package targetdb

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/testenv"
)

// The shop example's projections (deploy/examples/shop) are what users
// copy. Their tables must be a replay of the ledger in log order — the same
// whatever the batch boundaries — with a field an event does not carry
// kept, and a field it carries as null cleared.

const shopExample = "../../deploy/examples/shop"

// shopTarget is a fresh database with one schema version of the example.
func shopTarget(t *testing.T, version string, defs []Projection) (*pgxpool.Pool, *Projections) {
	t.Helper()
	dsn := testenv.Database(t)
	conn := testenv.Conn(t, dsn)
	files, _ := filepath.Glob(filepath.Join(shopExample, version, "migrations", "*.sql"))
	for _, f := range files {
		sql, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(context.Background(), string(sql)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	defs = slices.Clone(defs)
	for i := range defs {
		sql, err := os.ReadFile(filepath.Join(shopExample, version, defs[i].SQL))
		if err != nil {
			t.Fatal(err)
		}
		defs[i].SQL = string(sql)
	}
	ps, err := CompileProjections(defs, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := NewPool(dsn, Session{ApplicationName: "sluice-test"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, ps
}

// customer is the reference model: a replay of the events in log order.
type customer struct {
	name, email *string
	changes     int
}

// shopEvents makes n random customer events about a few customers, some of
// them published twice; it returns them with the model's state after them.
func shopEvents(r *rand.Rand, n int) ([]Record, map[string]*customer) {
	model := map[string]*customer{}
	seen := map[string]bool{}
	var recs []Record
	str := func(s string) *string { return &s }
	for i := 0; len(recs) < n; i++ {
		if i > 0 && r.IntN(10) == 0 { // a publish of an earlier event again: no effect
			dup := recs[r.IntN(len(recs))]
			recs = append(recs, event(int64(len(recs)), dup.Event.Subject, dup.Event.ID, dup.Event.Type, string(dup.Event.Data)))
			continue
		}
		subject := fmt.Sprintf("c%d", r.IntN(8))
		fields := map[string]any{}
		typ := "customer.registered"
		switch r.IntN(5) {
		case 0:
			fields["name"], fields["email"] = fmt.Sprintf("n%d", i), fmt.Sprintf("e%d@x", i)
		case 1:
			typ, fields["name"] = "customer.renamed", fmt.Sprintf("n%d", i)
		case 2:
			typ, fields["email"] = "customer.email_changed", fmt.Sprintf("e%d@x", i)
		case 3:
			typ, fields["email"] = "customer.email_changed", nil // carried as null: cleared
		case 4:
			typ, fields["name"] = "customer.renamed", nil
		}
		data, _ := json.Marshal(fields)
		id := fmt.Sprintf("ev%d", i)
		recs = append(recs, event(int64(len(recs)), subject, id, typ, string(data)))
		if seen[id] {
			continue
		}
		seen[id] = true
		c := model[subject]
		if c == nil {
			c = &customer{}
			model[subject] = c
		}
		c.changes++
		for k, v := range fields {
			var val *string
			if v != nil {
				val = str(v.(string))
			}
			if k == "name" {
				c.name = val
			} else {
				c.email = val
			}
		}
	}
	return recs, model
}

func (c *customer) String() string {
	s := func(p *string) string {
		if p == nil {
			return "NULL"
		}
		return *p
	}
	return fmt.Sprintf("%s|%s|%d", s(c.name), s(c.email), c.changes)
}

// applyInChunks applies recs in chunks whose sizes r draws from 1 to most.
func applyInChunks(t *testing.T, pool *pgxpool.Pool, ps *Projections, recs []Record, r *rand.Rand, most int) {
	t.Helper()
	for i := 0; i < len(recs); {
		n := min(1+r.IntN(most), len(recs)-i)
		if _, err := applyAll(t, pool, ps, recs[i:i+n]); err != nil {
			t.Fatalf("chunk at %d of %d: %v", i, n, err)
		}
		i += n
	}
}

// facts reads a target's customers as the model prints them.
func facts(t *testing.T, pool *pgxpool.Pool, sql string) map[string]string {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, row string
		if err := rows.Scan(&id, &row); err != nil {
			t.Fatal(err)
		}
		out[id] = row
	}
	return out
}

const (
	v1Facts = `SELECT id, coalesce(name, 'NULL') || '|' || coalesce(email, 'NULL') || '|' || changes FROM customers`
	v2Facts = `SELECT c.client_id, coalesce(c.display_name, 'NULL') || '|' || coalesce(e.email, 'NULL') || '|' || c.changes
		FROM clients c LEFT JOIN client_emails e USING (client_id)`
)

func TestTheShopExampleIsAReplayInLogOrderWhateverTheBatchBoundaries(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	for round := range 2 {
		r := rand.New(rand.NewPCG(seed, uint64(round)))
		recs, model := shopEvents(r, 120)
		want := map[string]string{}
		for id, c := range model {
			want[id] = c.String()
		}
		for _, target := range []struct {
			version string
			defs    []Projection
			facts   string
		}{
			{"v1", []Projection{{Name: "customers", Types: []string{"customer.*"}, SQL: "customers.sql"}}, v1Facts},
			{"v2", []Projection{{Name: "clients", Types: []string{"customer.*"}, SQL: "clients.sql"},
				{Name: "client_emails", Types: []string{"customer.registered", "customer.email_changed"}, SQL: "client_emails.sql"}}, v2Facts},
		} {
			for _, most := range []int{1, 13, len(recs)} {
				pool, ps := shopTarget(t, target.version, target.defs)
				applyInChunks(t, pool, ps, recs, r, most)
				got := facts(t, pool, target.facts)
				for id, w := range want {
					if got[id] != w {
						t.Errorf("seed %d round %d, %s in chunks of up to %d: customer %s is %q, a replay in log order gives %q",
							seed, round, target.version, most, id, got[id], w)
					}
				}
				if len(got) != len(want) {
					t.Errorf("%s in chunks of up to %d: %d customers, want %d", target.version, most, len(got), len(want))
				}
			}
		}
	}
}

// TestTheReplayCheckFindsATamperedRowOfAProjectionTable: the ledger is
// untouched, so only recomputing the projections can tell that what
// readers read is wrong.
func TestTheReplayCheckFindsATamperedRowOfAProjectionTable(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	recs, _ := shopEvents(r, 200)
	pool, ps := shopTarget(t, "v2", []Projection{{Name: "clients", Types: []string{"customer.*"}, SQL: "clients.sql"},
		{Name: "client_emails", Types: []string{"customer.registered", "customer.email_changed"}, SQL: "client_emails.sql"}})
	applyInChunks(t, pool, ps, recs, r, 30)
	ctx := context.Background()
	check := func() ReplayResult {
		t.Helper()
		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		var reports int
		res, err := ReplayCheck(ctx, conn.Conn(), ps, 3, 64, func(RebuildProgress) { reports++ })
		if err != nil {
			t.Fatal(err)
		}
		if chunks := (res.Events + 63) / 64; int64(reports) != chunks || res.Events == 0 || len(res.Tables) != 2 {
			t.Fatalf("replay check: %+v after %d progress reports; want both tables after %d chunks", res, reports, chunks)
		}
		return res
	}
	if res := check(); !res.Same() {
		t.Fatalf("the live tables differ from a replay of their own ledger: %+v", res)
	}
	if _, err := pool.Exec(ctx, `UPDATE clients SET display_name = 'tampered' WHERE client_id = 'c3';
		DELETE FROM client_emails WHERE client_id = (SELECT min(client_id) FROM client_emails)`); err != nil {
		t.Fatal(err)
	}
	res := check()
	byTable := map[string]TableReplay{}
	for _, tr := range res.Tables {
		byTable[tr.Table] = tr
	}
	clients, emails := byTable["public.clients"], byTable["public.client_emails"]
	if clients.OnlyLive != 1 || clients.OnlyReplay != 1 || len(clients.Examples) != 2 ||
		!strings.Contains(clients.Examples[0], `"tampered"`) || !strings.Contains(clients.Examples[1], `"c3"`) {
		t.Errorf("clients: %+v; want the tampered row of c3 on both sides", clients)
	}
	if emails.OnlyLive != 0 || emails.OnlyReplay != 1 || emails.Rows != emails.Replayed-1 {
		t.Errorf("client_emails: %+v; want the deleted row only in the replay", emails)
	}
	var name string
	if err := pool.QueryRow(ctx, `SELECT display_name FROM clients WHERE client_id = 'c3'`).Scan(&name); err != nil || name != "tampered" {
		t.Errorf("the check changed the live table: %q, %v", name, err)
	}
}

// TestTheShopExampleWritesTheTablesItSaysItWrites: a projection's tables
// default to what its SQL writes; the examples' comments must not add any.
func TestTheShopExampleWritesTheTablesItSaysItWrites(t *testing.T) {
	for file, want := range map[string]string{
		"v1/customers.sql":     "customers",
		"v2/clients.sql":       "clients",
		"v2/client_emails.sql": "client_emails",
	} {
		sql, err := os.ReadFile(filepath.Join(shopExample, file))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(WrittenTables(string(sql)), ","); got != want {
			t.Errorf("%s writes %q, want %q", file, got, want)
		}
	}
}
