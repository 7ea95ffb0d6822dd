package consumer

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
)

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
	ok := Config{Target: "a", Cluster: kafkaadmin.New(kafkaadmin.Config{Brokers: []string{"k:9092"}}), DSN: "postgres://x"}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"an upper-case target name", func(c *Config) { c.Target = "A" }, "target name"},
		{"a target name with a dot", func(c *Config) { c.Target = "a.b" }, "target name"},
		{"no Kafka cluster", func(c *Config) { c.Cluster = nil }, "Cluster is required"},
		{"no DSN", func(c *Config) { c.DSN = "" }, "DSN is required"},
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
	_, err := New(Config{Target: "a", Cluster: kafkaadmin.New(kafkaadmin.Config{Brokers: []string{"k:9092"}}), DSN: "postgres://u:s3cret@host:notaport/db"})
	if err == nil {
		t.Fatal("accepted a DSN with a bad port")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the error leaks the password: %v", err)
	}
}
