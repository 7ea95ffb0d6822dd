package targetdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluicehq/sluice/schema"
)

func pgErr(code string) error {
	return fmt.Errorf("apply batch: %w", &pgconn.PgError{Code: code, Message: "from the server"})
}

func TestClassify(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"lock not available (55P03) is the database's fault", pgErr("55P03"), Retryable},
		{"a statement or lock timeout (57014) is retried", pgErr("57014"), Retryable},
		{"a serialization failure (40001) is retried", pgErr("40001"), Retryable},
		{"a deadlock (40P01) is retried", pgErr("40P01"), Retryable},
		{"a lost connection (08006) is retried", pgErr("08006"), Retryable},
		{"admin shutdown (57P01) is retried", pgErr("57P01"), Retryable},
		{"crash shutdown (57P02) is retried", pgErr("57P02"), Retryable},
		{"cannot connect now (57P03) is retried", pgErr("57P03"), Retryable},
		{"too many connections (53300) is retried", pgErr("53300"), Retryable},
		{"read-only after failover (25006) is retried", pgErr("25006"), Retryable},
		{"a missing table (42P01) is an operator's to fix, not the event's", pgErr("42P01"), Retryable},
		{"a context deadline is retried", context.DeadlineExceeded, Retryable},
		{"a network error is retried", io.ErrUnexpectedEOF, Retryable},
		{"an unknown error is retried, never dead-lettered", errors.New("something odd"), Retryable},
		{"a CHECK violation (23514) is the event's fault", pgErr("23514"), Permanent},
		{"a NOT NULL violation (23502) is the event's fault", pgErr("23502"), Permanent},
		{"invalid JSON text (22P02) is the event's fault", pgErr("22P02"), Permanent},
		{"a NUL in jsonb (22P05) is the event's fault", pgErr("22P05"), Permanent},
		{"a value out of range (22003) is the event's fault", pgErr("22003"), Permanent},
		{"an index row too large (54000) is the event's fault", pgErr("54000"), Permanent},
		{"a record that does not decode is permanent", fmt.Errorf("decode: %w", schema.ErrInvalidEvent), Permanent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Classify(c.err); got != c.want {
				t.Fatalf("Classify(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}

func TestIsSlow(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"a statement timeout (57014) is slowness", pgErr("57014"), true},
		{"a transaction deadline is slowness", fmt.Errorf("apply: %w", context.DeadlineExceeded), true},
		{"a lock timeout (55P03) is not: a smaller batch waits on the same lock", pgErr("55P03"), false},
		{"a lost connection is not", pgErr("08006"), false},
		{"a data error is not", pgErr("22P02"), false},
	} {
		if got := IsSlow(c.err); got != c.want {
			t.Errorf("%s: IsSlow = %v", c.name, got)
		}
	}
}
