package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/consumer"
	"github.com/sluicehq/sluice/internal/targetdb"
	"github.com/sluicehq/sluice/internal/tlsfiles"
	"github.com/sluicehq/sluice/internal/tracing"
	"github.com/sluicehq/sluice/producer"
)

// duration reads "250ms", "5s", "7d"-free Go durations from YAML.
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 250ms, 5s, 1h)", n.Line, n.Value)
	}
	*d = duration(v)
	return nil
}

// config is the one YAML file every subcommand reads. Secrets (ingest keys,
// admin token, DSNs) can come from the environment instead; see applyEnv.
type config struct {
	// dir is the configuration file's directory: relative paths in it
	// (migrations, sql_file) are relative to the file, not to where sluice runs.
	dir     string
	Kafka   kafkaConfig    `yaml:"kafka"`
	Ingest  ingestConfig   `yaml:"ingest"`
	Apply   applyConfig    `yaml:"apply"`
	Targets []targetConfig `yaml:"targets"`
	Log     logConfig      `yaml:"log"`
	Tracing tracingConfig  `yaml:"tracing"`
}

// tracingConfig exports spans over OTLP/HTTP; off without an endpoint.
type tracingConfig struct {
	Endpoint    string  `yaml:"endpoint"`
	SampleRatio float64 `yaml:"sample_ratio"`
}

type kafkaConfig struct {
	Brokers           []string `yaml:"brokers"`
	Topic             string   `yaml:"topic"`
	Partitions        int      `yaml:"partitions"`
	ReplicationFactor int      `yaml:"replication_factor"`
	Retention         duration `yaml:"retention"`
	// TLS, when present (even empty: the system's CAs), encrypts every
	// connection to the brokers.
	TLS *tlsClientConfig `yaml:"tls"`
	// SASL authenticates every connection.
	SASL *saslConfig `yaml:"sasl"`

	tls  *tls.Config    // read from TLS by validate
	sasl sasl.Mechanism // made from SASL by validate
}

type tlsClientConfig struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

type saslConfig struct {
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// tlsServerConfig serves ingest over TLS; client_ca_file requires client
// certificates signed by it.
type tlsServerConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

type ingestConfig struct {
	Listen       string      `yaml:"listen"`
	AdminListen  string      `yaml:"admin_listen"`
	Keys         []keyConfig `yaml:"keys"`
	AdminToken   string      `yaml:"admin_token"`
	MaxBodyBytes int64       `yaml:"max_body_bytes"`
	MaxEvents    int         `yaml:"max_events"`
	WriteTimeout duration    `yaml:"write_timeout"`
	Linger       duration    `yaml:"linger"`
	RatePerKey   float64     `yaml:"rate_per_key"`
	MaxInFlight  int         `yaml:"max_in_flight"`
	// MaxInFlightPerKey is one key's share of MaxInFlight.
	MaxInFlightPerKey int `yaml:"max_in_flight_per_key"`
	// DrainDelay is how long ingest answers /readyz with 503 before it
	// stops accepting connections, on SIGTERM: the time a load balancer
	// needs to stop sending it requests.
	DrainDelay duration `yaml:"drain_delay"`
	// TLS serves the public listener over TLS.
	TLS *tlsServerConfig `yaml:"tls"`

	tls *tls.Config // read from TLS by validate
}

// keyConfig is one ingest key: a bare string (the key), or a mapping that
// names it, gives it or its SHA-256, and may scope it.
type keyConfig struct {
	Name    string   `yaml:"name"`
	Key     string   `yaml:"key"`
	SHA256  string   `yaml:"sha256"`
	Sources []string `yaml:"sources"`
	Types   []string `yaml:"types"`
}

func (k *keyConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*k = keyConfig{Key: n.Value}
		return nil
	}
	// Node.Decode does not keep the file's strictness: check the fields here.
	if n.Kind == yaml.MappingNode {
		for i := 0; i < len(n.Content); i += 2 {
			switch f := n.Content[i].Value; f {
			case "name", "key", "sha256", "sources", "types":
			default:
				return fmt.Errorf("line %d: field %s not found in an ingest key (name, key, sha256, sources, types)", n.Content[i].Line, f)
			}
		}
	}
	type plain keyConfig // without this method
	return n.Decode((*plain)(k))
}

func (k keyConfig) producerKey() producer.Key {
	return producer.Key{Name: k.Name, Secret: k.Key, SHA256: k.SHA256, Sources: k.Sources, Types: k.Types}
}

// ingestKeys are the configured keys as the ingest handler takes them.
func (c *config) ingestKeys() []producer.Key {
	out := make([]producer.Key, len(c.Ingest.Keys))
	for i, k := range c.Ingest.Keys {
		out[i] = k.producerKey()
	}
	return out
}

type applyConfig struct {
	BatchSize                int      `yaml:"batch_size"`
	Linger                   duration `yaml:"linger"`
	MaxConns                 int32    `yaml:"max_conns"`
	LockTimeout              duration `yaml:"lock_timeout"`
	StatementTimeout         duration `yaml:"statement_timeout"`
	IdleInTransactionTimeout duration `yaml:"idle_in_transaction_timeout"`
	ApplyTimeout             duration `yaml:"apply_timeout"`
	RetryMax                 duration `yaml:"retry_max"`
	TripAfter                uint32   `yaml:"trip_after"`
	BreakerMinOpen           duration `yaml:"breaker_min_open"`
	BreakerMaxOpen           duration `yaml:"breaker_max_open"`
	// BlockerPolicy is every target's, unless a target gives its own.
	BlockerPolicy *blockerPolicyConfig `yaml:"blocker_policy"`
}

// blockerPolicyConfig ends (or reports) sessions idle in a transaction
// that stall a target: see consumer.BlockerPolicy.
type blockerPolicyConfig struct {
	After           duration `yaml:"after"`
	Mode            string   `yaml:"mode"`
	Users           []string `yaml:"users"`
	Applications    []string `yaml:"applications"`
	AllowSuperusers bool     `yaml:"allow_superusers"`
}

func (b *blockerPolicyConfig) validate() error {
	if b == nil {
		return nil
	}
	switch {
	case b.Mode != "report" && b.Mode != "terminate":
		return fmt.Errorf("mode: %q is not one of report, terminate", b.Mode)
	case b.After < duration(time.Second):
		return fmt.Errorf("after: %v: give at least 1s (leave the policy out to turn it off)", time.Duration(b.After))
	}
	return nil
}

type targetConfig struct {
	Name          string `yaml:"name"`
	DSN           string `yaml:"dsn"`
	SchemaVersion int    `yaml:"schema_version"`
	// Listen is the address of the applier's /healthz, /readyz and /metrics.
	Listen string `yaml:"listen"`
	// MaxConns overrides apply.max_conns for this target.
	MaxConns int32 `yaml:"max_conns"`
	// Migrations is a directory of the target's own DDL (NNNN_name.sql),
	// applied by `sluice migrate` after sluice's own and tracked apart.
	Migrations string `yaml:"migrations"`
	// Projections apply events to the target's own tables.
	Projections []projectionConfig `yaml:"projections"`
	// BlockerPolicy overrides apply.blocker_policy for this target.
	BlockerPolicy *blockerPolicyConfig `yaml:"blocker_policy"`
	// Facts (or FactsFile) is the target's facts query, for ctl verify and
	// cutover-check: canonical rows, first column the key.
	Facts     string `yaml:"facts"`
	FactsFile string `yaml:"facts_file"`
}

// facts reads target t's facts query, its facts_file included.
func (c *config) facts(t targetConfig) (string, error) {
	if t.FactsFile == "" {
		return t.Facts, nil
	}
	if t.Facts != "" {
		return "", configErr("targets[%s]: facts and facts_file both given; choose one", t.Name)
	}
	b, err := os.ReadFile(c.path(t.FactsFile))
	if err != nil {
		return "", configErr("targets[%s].facts_file: %v", t.Name, err)
	}
	return string(b), nil
}

// blockerPolicy is target t's policy: its own, else apply's, else off.
func (c *config) blockerPolicy(t targetConfig) consumer.BlockerPolicy {
	b := t.BlockerPolicy
	if b == nil {
		b = c.Apply.BlockerPolicy
	}
	if b == nil {
		return consumer.BlockerPolicy{}
	}
	return consumer.BlockerPolicy{After: time.Duration(b.After), Terminate: b.Mode == "terminate",
		Users: b.Users, Applications: b.Applications, AllowSuperusers: b.AllowSuperusers}
}

type projectionConfig struct {
	Name    string   `yaml:"name"`
	Types   []string `yaml:"types"`
	SQL     string   `yaml:"sql"`
	SQLFile string   `yaml:"sql_file"`
	Reset   string   `yaml:"reset"`
	Tables  []string `yaml:"tables"`
}

type logConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// errConfig prefixes every configuration error so that cmd can tell them
// from run-time failures (exit code 2).
var errConfig = errors.New("configuration")

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errConfig}, args...)...)
}

// loadConfig reads path (strictly: an unknown key is an error, since a typo
// would otherwise silently keep a default), applies the environment, fills
// defaults and validates.
func loadConfig(path string, getenv func(string) string) (*config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, configErr("%v", err)
	}
	return parseConfig(path, raw, getenv)
}

func parseConfig(name string, raw []byte, getenv func(string) string) (*config, error) {
	var c config
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, configErr("%s: %s", name, quietYAMLError(err))
	}
	c.dir = filepath.Dir(name)
	c.applyEnv(getenv)
	c.setDefaults()
	if err := c.validate(); err != nil {
		return nil, configErr("%s: %v", name, err)
	}
	return &c, nil
}

// yamlValue is how the YAML decoder quotes a value in its errors.
var yamlValue = regexp.MustCompile("`[^`]*`")

// quietYAMLError is err without the values it quotes: a key or a token
// misplaced under the wrong field would otherwise be printed.
func quietYAMLError(err error) string {
	return yamlValue.ReplaceAllString(err.Error(), "(value not shown)")
}

// envName is the variable that overrides a target's DSN:
// SLUICE_TARGET_<NAME>_DSN, the name upper-cased with '-' as '_'.
func envName(target string) string {
	return "SLUICE_TARGET_" + strings.ToUpper(strings.ReplaceAll(target, "-", "_")) + "_DSN"
}

func (c *config) applyEnv(getenv func(string) string) {
	if v := getenv("SLUICE_KAFKA_BROKERS"); v != "" {
		c.Kafka.Brokers = splitList(v)
	}
	if v := getenv("SLUICE_INGEST_KEYS"); v != "" {
		c.Ingest.Keys = envKeys(splitList(v))
	}
	if v := getenv("SLUICE_KAFKA_SASL_PASSWORD"); v != "" && c.Kafka.SASL != nil {
		c.Kafka.SASL.Password = v
	}
	if v := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); v != "" && c.Tracing.Endpoint == "" {
		c.Tracing.Endpoint = v
	}
	if v := getenv("SLUICE_ADMIN_TOKEN"); v != "" {
		c.Ingest.AdminToken = v
	}
	for i := range c.Targets {
		if v := getenv(envName(c.Targets[i].Name)); v != "" {
			c.Targets[i].DSN = v
		}
	}
}

// envKeys reads SLUICE_INGEST_KEYS entries: "KEY", or "NAME:KEY" to name
// it (a name is letters, digits, '.', '_' and '-').
func envKeys(entries []string) []keyConfig {
	out := make([]keyConfig, len(entries))
	for i, e := range entries {
		out[i] = keyConfig{Key: e}
		if name, key, ok := strings.Cut(e, ":"); ok && envKeyName.MatchString(name) {
			out[i] = keyConfig{Name: name, Key: key}
		}
	}
	return out
}

var envKeyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (c *config) setDefaults() {
	if c.Kafka.Topic == "" {
		c.Kafka.Topic = "sluice.events"
	}
	if c.Kafka.Partitions == 0 {
		c.Kafka.Partitions = 6
	}
	if c.Kafka.ReplicationFactor == 0 {
		c.Kafka.ReplicationFactor = 1
	}
	if c.Kafka.Retention == 0 {
		c.Kafka.Retention = duration(7 * 24 * time.Hour)
	}
	if c.Ingest.Listen == "" {
		c.Ingest.Listen = "127.0.0.1:8080"
	}
	if c.Ingest.AdminListen == "" {
		c.Ingest.AdminListen = "127.0.0.1:8081"
	}
	if c.Ingest.DrainDelay == 0 {
		c.Ingest.DrainDelay = duration(2 * time.Second)
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
}

func (c *config) validate() error {
	if len(c.Kafka.Brokers) == 0 {
		return errors.New("kafka.brokers: at least one broker is required")
	}
	if c.Kafka.Partitions < 1 {
		return errors.New("kafka.partitions: must be at least 1")
	}
	if c.Kafka.ReplicationFactor < 1 {
		return errors.New("kafka.replication_factor: must be at least 1")
	}
	if err := c.readSecurity(); err != nil {
		return err
	}
	if r := c.Tracing.SampleRatio; r < 0 || r > 1 {
		return fmt.Errorf("tracing.sample_ratio: %v is not between 0 and 1", r)
	}
	if err := c.Apply.BlockerPolicy.validate(); err != nil {
		return fmt.Errorf("apply.blocker_policy.%v", err)
	}
	seen := map[string]bool{}
	for i, t := range c.Targets {
		switch {
		case t.Name == "":
			return fmt.Errorf("targets[%d].name: required", i)
		case seen[t.Name]:
			return fmt.Errorf("targets[%d].name: %q is used twice", i, t.Name)
		case t.DSN == "":
			return fmt.Errorf("targets[%d].dsn: required (or set %s)", i, envName(t.Name))
		case t.SchemaVersion < 0:
			return fmt.Errorf("targets[%d].schema_version: must not be negative", i)
		}
		if err := t.BlockerPolicy.validate(); err != nil {
			return fmt.Errorf("targets[%d].blocker_policy.%v", i, err)
		}
		for j, p := range t.Projections {
			if p.Name == "" || (p.SQL == "") == (p.SQLFile == "") {
				return fmt.Errorf("targets[%d].projections[%d]: give a name and exactly one of sql or sql_file", i, j)
			}
		}
		seen[t.Name] = true
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: %q is not one of text, json", c.Log.Format)
	}
	return nil
}

// readSecurity reads the TLS files and makes the SASL mechanism, so that a
// missing file or a wrong mechanism is a configuration error at start.
func (c *config) readSecurity() error {
	if t := c.Kafka.TLS; t != nil {
		cfg, err := tlsfiles.Client{CAFile: c.path(t.CAFile), CertFile: c.path(t.CertFile), KeyFile: c.path(t.KeyFile),
			ServerName: t.ServerName}.Config()
		if err != nil {
			return fmt.Errorf("kafka.tls: %v", err)
		}
		c.Kafka.tls = cfg
	}
	if s := c.Kafka.SASL; s != nil {
		if s.Username == "" || s.Password == "" {
			return errors.New("kafka.sasl: username and password are required (the password may come from SLUICE_KAFKA_SASL_PASSWORD)")
		}
		var err error
		switch s.Mechanism {
		case "PLAIN":
			if c.Kafka.TLS == nil {
				return errors.New("kafka.sasl: PLAIN sends the password in clear; configure kafka.tls too")
			}
			c.Kafka.sasl = plain.Mechanism{Username: s.Username, Password: s.Password}
		case "SCRAM-SHA-256":
			c.Kafka.sasl, err = scram.Mechanism(scram.SHA256, s.Username, s.Password)
		case "SCRAM-SHA-512":
			c.Kafka.sasl, err = scram.Mechanism(scram.SHA512, s.Username, s.Password)
		default:
			return fmt.Errorf("kafka.sasl.mechanism: %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", s.Mechanism)
		}
		if err != nil {
			return fmt.Errorf("kafka.sasl: %v", err)
		}
	}
	if t := c.Ingest.TLS; t != nil {
		cfg, err := tlsfiles.Server{CertFile: c.path(t.CertFile), KeyFile: c.path(t.KeyFile), ClientCAFile: c.path(t.ClientCAFile)}.Config()
		if err != nil {
			return fmt.Errorf("ingest.tls: %v", err)
		}
		c.Ingest.tls = cfg
	}
	return nil
}

// startTracing exports this process's spans as service, when tracing is
// configured; the returned function flushes them at exit.
func (c *config) startTracing(ctx context.Context, service string, log *slog.Logger) (func(), error) {
	shutdown, err := tracing.Setup(ctx, tracing.Config{Endpoint: c.Tracing.Endpoint, ServiceName: service, SampleRatio: c.Tracing.SampleRatio})
	if err != nil {
		return nil, configErr("%v", err)
	}
	if c.Tracing.Endpoint != "" {
		log.Info("tracing on", "endpoint", c.Tracing.Endpoint, "service", service)
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Warn("flushing spans", "err", err)
		}
	}, nil
}

// setLogFormat applies a --log-format flag over the configuration.
func (c *config) setLogFormat(f string) error {
	switch f {
	case "":
	case "text", "json":
		c.Log.Format = f
	default:
		return fmt.Errorf("%w: --log-format %q is not text or json", errUsage, f)
	}
	return nil
}

// path resolves a path of the configuration file against its directory.
func (c *config) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// projections reads target t's projections, their sql_file included.
func (c *config) projections(t targetConfig) ([]targetdb.Projection, error) {
	out := make([]targetdb.Projection, len(t.Projections))
	for i, p := range t.Projections {
		sql := p.SQL
		if p.SQLFile != "" {
			b, err := os.ReadFile(c.path(p.SQLFile))
			if err != nil {
				return nil, configErr("targets[%s].projections[%s].sql_file: %v", t.Name, p.Name, err)
			}
			sql = string(b)
		}
		out[i] = targetdb.Projection{Name: p.Name, Types: p.Types, SQL: sql, Reset: p.Reset, Tables: p.Tables}
	}
	return out, nil
}

// target returns the named target or an error listing the known ones.
func (c *config) target(name string) (targetConfig, error) {
	var names []string
	for _, t := range c.Targets {
		if t.Name == name {
			return t, nil
		}
		names = append(names, t.Name)
	}
	return targetConfig{}, configErr("unknown target %q (configured: %s)", name, strings.Join(names, ", "))
}
