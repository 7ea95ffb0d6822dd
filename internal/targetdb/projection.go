package targetdb

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Projection applies events to a target's own tables: one set-based SQL
// statement run, in the transaction that applies a batch, over the batch's
// new events of the types it handles.
//
// The statement reads those events from `batch`, a relation with the columns
// source, id, type, subject, time, datacontenttype, dataschema, data,
// data_base64, extensions, kafka_partition, kafka_offset: one row per event
// the ledger had not seen before, so a redelivery, a retried batch or a
// rewind never applies an event's effect twice. It takes no parameters, and
// may begin with WITH clauses of its own.
type Projection struct {
	// Name names the projection in errors, metrics and status. Lower-case
	// letters, digits and '_'.
	Name string
	// Types are the event types it handles: exact names, or prefixes
	// ending in '*' ("customer.*"). Empty means every type.
	Types []string
	// SQL is the statement.
	SQL string
	// Reset, for a rebuild, empties what the projection writes (for
	// example DELETE FROM customers). Default: DELETE FROM each of Tables.
	// A rebuild checks what a reset really changed (see Rebuild).
	Reset string
	// Tables are the tables the projection writes ("clients" or
	// "shop.clients"). Default: the tables its SQL names after INSERT INTO,
	// UPDATE, DELETE FROM and MERGE INTO. Locks on them are diagnosed like
	// locks on the ledger (ctl status, the blocker policy), and a rebuild
	// that empties them rebuilds the projection.
	Tables []string
}

// ErrBadProjection is returned (wrapped) by CompileProjections for a
// projection it refuses.
var ErrBadProjection = errors.New("bad projection")

// ProjectionError is a failure of one projection while applying: its name
// and the database's error. Classify sees through it.
type ProjectionError struct {
	Projection string
	Err        error
}

func (e *ProjectionError) Error() string { return "projection " + e.Projection + ": " + e.Err.Error() }
func (e *ProjectionError) Unwrap() error { return e.Err }

// ProjectionResult is what one projection did in one transaction.
type ProjectionResult struct {
	Projection string
	Rows       int64
	Took       time.Duration
	Err        error
}

// Projections is a target's compiled projections, run in order. The zero
// value and nil run none. Safe for concurrent use.
type Projections struct {
	list []compiled
	// observe, when set, receives each projection's result.
	observe func(ProjectionResult)
}

type compiled struct {
	Projection
	exact, patterns []string
	stmt            string
}

var projectionName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// batchColumns are the columns a projection reads from batch: the ledger's.
var batchColumns = strings.Join(ColumnNames(), ", ")

// CompileProjections checks defs and prepares them; observe (may be nil)
// receives every projection's result as it is applied.
func CompileProjections(defs []Projection, observe func(ProjectionResult)) (*Projections, error) {
	ps := &Projections{observe: observe}
	seen := map[string]bool{}
	for _, d := range defs {
		switch {
		case !projectionName.MatchString(d.Name):
			return nil, fmt.Errorf("%w: name %q: use lower-case letters, digits and '_', starting with a letter", ErrBadProjection, d.Name)
		case seen[d.Name]:
			return nil, fmt.Errorf("%w: %s is declared twice", ErrBadProjection, d.Name)
		case strings.TrimSpace(d.SQL) == "":
			return nil, fmt.Errorf("%w: %s has no SQL", ErrBadProjection, d.Name)
		case regexp.MustCompile(`\$[0-9]`).MatchString(d.SQL):
			return nil, fmt.Errorf("%w: %s: the statement takes no parameters ($n); it reads the batch from `batch`", ErrBadProjection, d.Name)
		}
		seen[d.Name] = true
		c := compiled{Projection: d, exact: []string{}, patterns: []string{}}
		for _, t := range d.Types {
			if prefix, ok := strings.CutSuffix(t, "*"); ok {
				c.patterns = append(c.patterns, likeEscape(prefix)+"%")
			} else {
				c.exact = append(c.exact, t)
			}
		}
		if len(c.Tables) == 0 {
			c.Tables = WrittenTables(d.SQL)
		}
		for _, t := range c.Tables {
			if !tableName.MatchString(t) {
				return nil, fmt.Errorf("%w: %s: table %q: give a table name, optionally schema-qualified (schema.table)", ErrBadProjection, d.Name, t)
			}
		}
		if c.Reset == "" && len(c.Tables) > 0 {
			c.Reset = "DELETE FROM " + strings.Join(c.Tables, "; DELETE FROM ")
		}
		stmt, err := withBatch(d.SQL, len(d.Types) == 0)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadProjection, d.Name, err)
		}
		c.stmt = stmt
		ps.list = append(ps.list, c)
	}
	return ps, nil
}

// tableName is a table name as a projection declares it: a plain or
// schema-qualified identifier, lower-case as PostgreSQL folds it.
var tableName = regexp.MustCompile(`^([a-z_][a-z0-9_$]*\.)?[a-z_][a-z0-9_$]*$`)

// writes finds the targets of INSERT INTO, UPDATE, DELETE FROM and MERGE
// INTO, quoted or not, schema-qualified or not.
var writes = regexp.MustCompile(`(?is)\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|MERGE\s+INTO)\s+(?:ONLY\s+)?((?:"[^"]+"|[a-z_][a-z0-9_$]*)(?:\s*\.\s*(?:"[^"]+"|[a-z_][a-z0-9_$]*))?)`)

// notCode matches what a statement holds that is not SQL to scan for table
// names: comments and string constants.
var notCode = regexp.MustCompile(`(?s)--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'`)

// WrittenTables lists, in order and once each, the tables sql writes by
// name: the default of a projection's Tables. "ON CONFLICT … DO UPDATE SET"
// names no table and is not taken for one.
func WrittenTables(sql string) []string {
	var out []string
	sql = notCode.ReplaceAllString(sql, " ") // "the update takes…" in a comment names no table
	for _, m := range writes.FindAllStringSubmatch(sql, -1) {
		name := strings.Join(strings.Fields(m[1]), "")
		if !strings.Contains(name, `"`) {
			name = strings.ToLower(name)
		}
		name = strings.ReplaceAll(name, `"`, "")
		if strings.EqualFold(name, "set") || slices.Contains(out, name) {
			continue
		}
		out = append(out, name)
	}
	return out
}

// Tables lists the tables every projection writes, once each, in order.
func (ps *Projections) Tables() []string {
	var out []string
	if ps != nil {
		for _, c := range ps.list {
			for _, t := range c.Tables {
				if !slices.Contains(out, t) {
					out = append(out, t)
				}
			}
		}
	}
	return out
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// leadingWith finds a statement's own WITH, after any comments before it.
var leadingWith = regexp.MustCompile(`(?is)^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*WITH\s+`)

// withBatch puts the batch relation in front of a projection's statement,
// merging with its own WITH clauses.
func withBatch(sql string, allTypes bool) (string, error) {
	filter := ` WHERE type = ANY($1) OR type LIKE ANY($2)`
	if allTypes {
		filter = ` WHERE $1::text[] IS NOT NULL AND $2::text[] IS NOT NULL`
	}
	batch := `batch AS (SELECT ` + batchColumns + ` FROM sluice_batch` + filter + `)`
	if loc := leadingWith.FindStringIndex(sql); loc != nil {
		rest := sql[loc[1]:]
		if strings.HasPrefix(strings.ToUpper(rest), "RECURSIVE") {
			return "", errors.New("WITH RECURSIVE statements are not supported; wrap the recursive part in a function")
		}
		return "WITH " + batch + ", " + rest, nil
	}
	return "WITH " + batch + " " + sql, nil
}

// Names lists the projections in order.
func (ps *Projections) Names() []string {
	if ps == nil {
		return nil
	}
	out := make([]string, len(ps.list))
	for i, c := range ps.list {
		out[i] = c.Name
	}
	return out
}

// Get returns the named projection.
func (ps *Projections) Get(name string) (Projection, bool) {
	if ps != nil {
		for _, c := range ps.list {
			if c.Name == name {
				return c.Projection, true
			}
		}
	}
	return Projection{}, false
}

func (ps *Projections) empty() bool { return ps == nil || len(ps.list) == 0 }

// Empty reports a target without projections.
func (ps *Projections) Empty() bool { return ps.empty() }

// run runs every projection over sluice_batch in tx, in order, and returns
// the first failure as a *ProjectionError. only, when not empty, names the
// one projection to run.
func (ps *Projections) run(ctx context.Context, tx pgx.Tx, only string) ([]ProjectionResult, error) {
	var results []ProjectionResult
	for _, c := range ps.list {
		if only != "" && c.Name != only {
			continue
		}
		began := time.Now()
		ct, err := tx.Exec(ctx, c.stmt, c.exact, c.patterns)
		r := ProjectionResult{Projection: c.Name, Rows: ct.RowsAffected(), Took: time.Since(began)}
		if err != nil {
			r.Err = &ProjectionError{Projection: c.Name, Err: err}
		}
		results = append(results, r)
		if ps.observe != nil {
			ps.observe(r)
		}
		if r.Err != nil {
			return results, r.Err
		}
	}
	return results, nil
}
