package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

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

func TestBackoffGrowsWithJitterUpToTheCap(t *testing.T) {
	a := &Applier{cfg: Config{RetryMin: 100 * time.Millisecond, RetryMax: 2 * time.Second}}
	for attempt := 0; attempt < 40; attempt++ {
		want := min(100*time.Millisecond<<min(attempt, 30), 2*time.Second)
		for range 50 {
			d := a.backoff(attempt)
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: backoff %v outside [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	ok := Config{Target: "a", Brokers: []string{"k:9092"}, DSN: "postgres://x"}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"an upper-case target name", func(c *Config) { c.Target = "A" }, "target name"},
		{"a target name with a dot", func(c *Config) { c.Target = "a.b" }, "target name"},
		{"no brokers", func(c *Config) { c.Brokers = nil }, "kafka.brokers"},
		{"no DSN", func(c *Config) { c.DSN = "" }, "targets[a].dsn"},
		{"a negative batch size", func(c *Config) { c.BatchSize = -1 }, "must not be negative"},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for _, c := range cases {
		cfg := ok
		c.mutate(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalidConfig naming %s", c.name, err, c.want)
		}
	}
}

func TestNewRefusesAnUnparsableDSNWithoutQuotingIt(t *testing.T) {
	_, err := New(Config{Target: "a", Brokers: []string{"k:9092"}, DSN: "postgres://u:s3cret@host:notaport/db"})
	if err == nil {
		t.Fatal("accepted a DSN with a bad port")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the error leaks the password: %v", err)
	}
}
