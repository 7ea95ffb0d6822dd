package main

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func TestTheExampleConfigurationLoads(t *testing.T) {
	c, err := loadConfig("../../deploy/sluice.example.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Targets) != 2 || c.Targets[0].Name != "a" || c.Targets[1].Name != "b" {
		t.Fatalf("targets: %+v", c.Targets)
	}
	if time.Duration(c.Apply.Linger) != 20*time.Millisecond || time.Duration(c.Kafka.Retention) != 168*time.Hour {
		t.Fatalf("durations: %v %v", c.Apply.Linger, c.Kafka.Retention)
	}
}

func TestDefaultsFillWhatIsLeftOut(t *testing.T) {
	c, err := parseConfig("min.yaml", []byte("kafka: {brokers: [k:9092]}\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Topic != "sluice.events" || c.Kafka.Partitions != 6 || c.Ingest.Listen == "" || c.Log.Format != "text" {
		t.Fatalf("defaults not filled: %+v", c)
	}
}

func TestTheEnvironmentOverridesSecrets(t *testing.T) {
	yaml := `
kafka: {brokers: [k:9092]}
ingest: {keys: [from-file-0123456789]}
targets:
  - {name: eu-west, dsn: "postgres://file"}
`
	env := map[string]string{
		"SLUICE_INGEST_KEYS":        "k1-0123456789abcdef, shop:k2-0123456789abcdef",
		"SLUICE_TARGET_EU_WEST_DSN": "postgres://from-env",
		"SLUICE_KAFKA_BROKERS":      "b1:9092,b2:9092",
		"SLUICE_TARGET_EU-WEST_DSN": "ignored: not a valid variable name",
	}
	c, err := parseConfig("env.yaml", []byte(yaml), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if want := []keyConfig{{Key: "k1-0123456789abcdef"}, {Name: "shop", Key: "k2-0123456789abcdef"}}; !reflect.DeepEqual(c.Ingest.Keys, want) {
		t.Errorf("keys: %+v, want %+v", c.Ingest.Keys, want)
	}
	if c.Targets[0].DSN != "postgres://from-env" {
		t.Errorf("dsn: %q", c.Targets[0].DSN)
	}
	if len(c.Kafka.Brokers) != 2 {
		t.Errorf("brokers: %q", c.Kafka.Brokers)
	}
}

func TestBadConfigurationNamesTheField(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"a misspelt key", "kafka: {brokers: [k:9092], partitons: 3}\n", "partitons"},
		{"no brokers", "kafka: {topic: x}\n", "kafka.brokers"},
		{"a duration without a unit", "kafka: {brokers: [k]}\napply: {linger: 20}\n", `"20" is not a duration`},
		{"a target without a DSN", "kafka: {brokers: [k]}\ntargets: [{name: a}]\n", "targets[0].dsn: required (or set SLUICE_TARGET_A_DSN)"},
		{"a target without a name", "kafka: {brokers: [k]}\ntargets: [{dsn: x}]\n", "targets[0].name"},
		{"a target named twice", "kafka: {brokers: [k]}\ntargets: [{name: a, dsn: x}, {name: a, dsn: y}]\n", "targets[1].name"},
		{"an unknown log level", "kafka: {brokers: [k]}\nlog: {level: loud}\n", "log.level"},
		{"zero partitions", "kafka: {brokers: [k], partitions: -1}\n", "kafka.partitions"},
		{"not YAML at all", "kafka: [\n", "cfg.yaml"},
		{"a blocker policy without a mode", "kafka: {brokers: [k]}\napply: {blocker_policy: {after: 60s}}\n", `apply.blocker_policy.mode: "" is not one of report, terminate`},
		{"a target's blocker policy with no bound", "kafka: {brokers: [k]}\ntargets: [{name: a, dsn: x, blocker_policy: {mode: terminate}}]\n", "targets[0].blocker_policy.after"},
		{"a Kafka CA file that is not there", "kafka: {brokers: [k], tls: {ca_file: /nonexistent/ca.pem}}\n", "kafka.tls: open /nonexistent/ca.pem"},
		{"a client certificate without its key", "kafka: {brokers: [k], tls: {cert_file: c.pem}}\n", "kafka.tls: cert_file and key_file go together"},
		{"PLAIN without TLS", "kafka: {brokers: [k], sasl: {mechanism: PLAIN, username: u, password: p}}\n", "PLAIN sends the password in clear"},
		{"an unknown SASL mechanism", "kafka: {brokers: [k], tls: {}, sasl: {mechanism: GSSAPI, username: u, password: p}}\n", `kafka.sasl.mechanism: "GSSAPI"`},
		{"SASL without a password", "kafka: {brokers: [k], sasl: {mechanism: SCRAM-SHA-512, username: u}}\n", "SLUICE_KAFKA_SASL_PASSWORD"},
		{"ingest TLS without a key", "kafka: {brokers: [k]}\ningest: {tls: {cert_file: c.pem}}\n", "ingest.tls: cert_file and key_file are required"},
		{"a misspelt field of a key", "kafka: {brokers: [k]}\ningest: {keys: [{name: a, sha265: ab}]}\n", "field sha265 not found in an ingest key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseConfig("cfg.yaml", []byte(c.yaml), noEnv)
			if !errors.Is(err, errConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want a configuration error naming %q", err, c.want)
			}
		})
	}
}

func TestIngestKeysAreStringsOrNamedScopedMappings(t *testing.T) {
	const yaml = `
kafka: {brokers: [k]}
ingest:
  keys:
    - plain-key-0123456789
    - name: shop
      sha256: 6a1c3f0e9d6f6f1f4b7b9f0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d
      sources: ["//shop/"]
      types: ["com.shop.*"]
`
	c, err := parseConfig("keys.yaml", []byte(yaml), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := []keyConfig{{Key: "plain-key-0123456789"}, {Name: "shop", SHA256: "6a1c3f0e9d6f6f1f4b7b9f0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d",
		Sources: []string{"//shop/"}, Types: []string{"com.shop.*"}}}
	if !reflect.DeepEqual(c.Ingest.Keys, want) {
		t.Fatalf("keys: %+v, want %+v", c.Ingest.Keys, want)
	}
}

func TestATargetsBlockerPolicyOverridesApplys(t *testing.T) {
	const yaml = `
kafka: {brokers: [k]}
apply:
  blocker_policy: {after: 60s, mode: report}
targets:
  - {name: a, dsn: x}
  - name: b
    dsn: y
    blocker_policy: {after: 30s, mode: terminate, users: [app], applications: [psql]}
`
	c, err := parseConfig("policy.yaml", []byte(yaml), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.blockerPolicy(c.Targets[0]), c.blockerPolicy(c.Targets[1])
	if a.After != time.Minute || a.Terminate {
		t.Errorf("target a: %+v, want apply's (60s, report)", a)
	}
	if b.After != 30*time.Second || !b.Terminate || b.Users[0] != "app" || b.Applications[0] != "psql" {
		t.Errorf("target b: %+v, want its own", b)
	}
	c.Apply.BlockerPolicy = nil
	if off := c.blockerPolicy(c.Targets[0]); off.After != 0 {
		t.Errorf("no policy anywhere: %+v, want off", off)
	}
}

func TestUnknownTargetListsTheKnownOnes(t *testing.T) {
	c, err := parseConfig("t.yaml", []byte("kafka: {brokers: [k]}\ntargets: [{name: a, dsn: x}, {name: b, dsn: y}]\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.target("c")
	if err == nil || !strings.Contains(err.Error(), `unknown target "c" (configured: a, b)`) {
		t.Fatalf("err = %v", err)
	}
}

func TestAMissingFileIsAConfigurationError(t *testing.T) {
	_, err := loadConfig(os.DevNull+".missing", noEnv)
	if !errors.Is(err, errConfig) {
		t.Fatalf("err = %v", err)
	}
}

func TestTheComposeConfigurationLoadsWithItsEnvironment(t *testing.T) {
	env := map[string]string{
		"SLUICE_INGEST_KEYS":  "local-dev-key-0123456789",
		"SLUICE_TARGET_A_DSN": "postgres://sluice:pw@postgres-a:5432/sluice",
		"SLUICE_TARGET_B_DSN": "postgres://sluice:pw@postgres-b:5432/sluice",
	}
	c, err := loadConfig("../../deploy/compose/sluice.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Brokers[0] != "kafka:9092" || c.Targets[1].DSN != env["SLUICE_TARGET_B_DSN"] || len(c.Ingest.Keys) != 1 {
		t.Fatalf("%+v", c)
	}
}
