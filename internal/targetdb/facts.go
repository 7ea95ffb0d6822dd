package targetdb

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrBadFacts is returned (wrapped) by Facts for a facts query it cannot
// run as one.
var ErrBadFacts = errors.New("bad facts query")

// Fact is one canonical row of a target's facts query: its key (the first
// column, as text) and the whole row as text, column names left out — two
// schemas that name columns differently hold the same fact when their
// values are the same.
type Fact struct {
	Key, Row string
}

// Facts runs a target's facts query — a SELECT whose first column is the
// key of the facts it returns (a customer id) — and calls each with its
// rows in byte order of the key, streaming: memory does not grow with the
// table. Two targets' facts can then be merged as they are read.
func Facts(ctx context.Context, conn *pgx.Conn, query string, each func(Fact) error) error {
	query = "\n" + strings.TrimRight(strings.TrimSpace(query), ";") + "\n"
	rows, err := conn.Query(ctx, `SELECT * FROM (`+query+`) f LIMIT 0`)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadFacts, err)
	}
	fields := rows.FieldDescriptions()
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadFacts, err)
	}
	if len(fields) == 0 {
		return fmt.Errorf("%w: it returns no columns", ErrBadFacts)
	}
	key := pgx.Identifier{fields[0].Name}.Sanitize()
	rows, err = conn.Query(ctx, fmt.Sprintf(`SELECT (f.%[1]s)::text COLLATE "C" AS sluice_key, f::text FROM (%[2]s) f ORDER BY 1`, key, query))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadFacts, err)
	}
	defer rows.Close()
	for rows.Next() {
		var f Fact
		var k *string
		if err := rows.Scan(&k, &f.Row); err != nil {
			return err
		}
		if k == nil {
			return fmt.Errorf("%w: a row with a NULL key (%s): the first column must name each fact", ErrBadFacts, f.Row)
		}
		f.Key = *k
		if err := each(f); err != nil {
			return err
		}
	}
	return rows.Err()
}
