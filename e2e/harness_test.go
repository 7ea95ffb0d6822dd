package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/testenv"
)

// sluiceBin is the binary under test, built with the race detector once by
// TestMain; binDir holds it (and the benchmarks' binary) until the run ends.
var sluiceBin, binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "sluice-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	sluiceBin = filepath.Join(dir, "sluice")
	// A run of benchmarks alone (`-run '^$'`, as make bench runs them) needs
	// no race build: benchmarks build their own binary without the detector,
	// which would multiply the memory and time they measure.
	if flag.Lookup("test.run").Value.String() != "^$" {
		build := exec.Command("go", "build", "-race", "-o", sluiceBin, "../cmd/sluice")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building sluice:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	deleteBacklogTopics()
	os.RemoveAll(dir)
	os.Exit(code)
}

// parallel runs the test beside the other parallel ones, after every
// sequential test has finished (Go runs those first): so never during a
// fault done to the whole stack (a frozen or restarted broker, a stopped or
// crashed cluster B), which only sequential tests do. A test may call it
// only if it owns everything it touches (its topic, groups and databases,
// as newPipeline gives), asserts no wall-clock bound that sharing two cores
// with another pipeline could break, and does not use t.Setenv.
func parallel(t *testing.T) {
	t.Helper()
	t.Parallel()
}

// services are the real local stack, from the environment.
type services struct {
	kafka, pgA, pgB, stack string
}

func requireServices(t testing.TB) services {
	t.Helper()
	s := services{
		kafka: os.Getenv("SLUICE_TEST_KAFKA"),
		pgA:   os.Getenv("SLUICE_TEST_PG_A"),
		pgB:   os.Getenv("SLUICE_TEST_PG_B"),
		stack: os.Getenv("SLUICE_STACK"),
	}
	for _, name := range []string{"SLUICE_TEST_KAFKA", "SLUICE_TEST_PG_A", "SLUICE_TEST_PG_B", "SLUICE_STACK"} {
		testenv.Require(t, name)
	}
	return s
}

// pipeline is one test's isolated sluice: its own topic, target names and
// databases, and the processes it started.
type pipeline struct {
	t           testing.TB
	svc         services
	id          string
	topic       string
	targets     map[string]string // short name (a, b) → target name
	dsns        map[string]string // short name → DSN of the test database
	dir         string
	config      string
	key         string
	ingestAt    string // the public listener: POST /v1/events
	adminAt     string // the private one: admin API, /ui, /metrics
	partitions  int
	listen      map[string]string // short name → the applier's ops address
	brokers     []string          // where the test's own Kafka clients connect
	bin         string            // the sluice binary its processes run
	sharedTopic bool              // the topic was given (opts.topic): close leaves it
	prepare     func(*exec.Cmd)   // opts.prepare

	mu    sync.Mutex
	procs []*proc
	conns map[string]*pgx.Conn
}

// adminToken is the pipeline's admin token (never an ingest key).
func (p *pipeline) adminToken() string { return "e2e-admin-" + p.id + "-0123456789" }

func randomID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// pipelineOptions tune newPipeline; the zero value is a 6-partition topic.
type pipelineOptions struct {
	partitions  int
	extraApply  string // YAML lines added under apply:
	extraIngest string // YAML lines added under ingest:
	// extraTarget are YAML lines added to a target's entry (short name →
	// lines indented by four spaces): migrations, projections.
	extraTarget map[string]string
	// brokers replaces the stack's plaintext broker address in sluice's
	// configuration (comma-separated); testBrokers the addresses the test's
	// own Kafka clients use (default: the stack's plaintext broker).
	// extraKafka are YAML lines added under kafka: (tls, sasl).
	brokers     string
	testBrokers string
	extraKafka  string
	// dsnOptions are added to each target's DSN (sslmode=verify-full&…).
	dsnOptions string
	// extraTop are YAML lines added at the top level (tracing).
	extraTop string
	// topic is an existing events topic to use instead of a fresh one; the
	// pipeline leaves it in place (benchmarks drain one backlog many times).
	topic string
	// binary replaces the race-built binary (benchmarks run one built
	// without the race detector).
	binary string
	// defaultApply leaves the apply: section to sluice's defaults instead of
	// the tests' small batches, so that a benchmark measures what an
	// operator gets; extraApply still applies.
	defaultApply bool
	// prepare adjusts each process the pipeline starts, before it starts.
	prepare func(*exec.Cmd)
}

func newPipeline(t testing.TB, opts pipelineOptions) *pipeline {
	t.Helper()
	svc := requireServices(t)
	if opts.partitions == 0 {
		opts.partitions = 6
	}
	id := randomID()
	p := &pipeline{
		t: t, svc: svc, id: id,
		topic:      "sluice.test." + id,
		targets:    map[string]string{"a": "a-" + id, "b": "b-" + id},
		dsns:       map[string]string{},
		dir:        t.TempDir(),
		key:        "e2e-key-" + id + "-0123456789",
		partitions: opts.partitions,
		listen:     map[string]string{"a": testenv.FreeAddr(t), "b": testenv.FreeAddr(t)},
		bin:        sluiceBin,
		prepare:    opts.prepare,
	}
	if opts.topic != "" {
		p.topic, p.sharedTopic = opts.topic, true
	}
	if opts.binary != "" {
		p.bin = opts.binary
	}
	for short, base := range map[string]string{"a": svc.pgA, "b": svc.pgB} {
		p.dsns[short] = createDatabase(t, base, "sluice_test_"+id)
	}
	brokers := svc.kafka
	if opts.brokers != "" {
		brokers = opts.brokers
	}
	p.brokers = []string{svc.kafka}
	if opts.testBrokers != "" {
		p.brokers = strings.Split(opts.testBrokers, ",")
	}
	var quoted []string
	for _, b := range strings.Split(brokers, ",") {
		quoted = append(quoted, strconv.Quote(b))
	}
	brokers = strings.Join(quoted, ", ")
	dsn := func(short string) string {
		if opts.dsnOptions == "" {
			return p.dsns[short]
		}
		return p.dsns[short] + "?" + opts.dsnOptions
	}
	apply := "  batch_size: 200\n  linger: 10ms\n  retry_max: 2s\n" + opts.extraApply
	if opts.defaultApply {
		apply = opts.extraApply
	}
	cfg := fmt.Sprintf(`kafka:
  brokers: [%s]
  topic: %s
  partitions: %d
  retention: 1h
%s
ingest:
  keys: [%q]
  admin_token: %q
%s
apply:
%s
targets:
  - name: %s
    dsn: %q
    schema_version: 3
    listen: %q
%s
  - name: %s
    dsn: %q
    schema_version: 3
    listen: %q
%s
log: {level: info}
%s
`, brokers, p.topic, opts.partitions, opts.extraKafka, p.key, p.adminToken(), opts.extraIngest, apply,
		p.targets["a"], dsn("a"), p.listen["a"], opts.extraTarget["a"],
		p.targets["b"], dsn("b"), p.listen["b"], opts.extraTarget["b"], opts.extraTop)
	p.config = filepath.Join(p.dir, "sluice.yaml")
	if err := os.WriteFile(p.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := p.command("migrate", "--all").CombinedOutput()
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	t.Cleanup(p.close)
	return p
}

// createDatabase makes a fresh database on the cluster of base and returns
// its DSN; the test's cleanup drops it.
func createDatabase(t testing.TB, base, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", redact(base), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	})
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = name
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s", cfg.User, cfg.Password, cfg.Host, cfg.Port, name)
}

func redact(dsn string) string {
	if i := strings.Index(dsn, "@"); i > 0 {
		return "postgres://…" + dsn[i:]
	}
	return dsn
}

func (p *pipeline) command(args ...string) *exec.Cmd {
	cmd := exec.Command(p.bin, append(args, "--config", p.config)...)
	cmd.Env = append(os.Environ(), "SLUICE_CONFIG=")
	return cmd
}

// proc is a sluice process the test started; its output goes to a file that
// is printed when the test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func (p *pipeline) start(name string, args ...string) *proc {
	p.t.Helper()
	logPath := filepath.Join(p.dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	f, err := os.Create(logPath)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := p.command(args...)
	cmd.Stdout, cmd.Stderr = f, f
	if p.prepare != nil {
		p.prepare(cmd)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	pr := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		pr.err = cmd.Wait()
		f.Close()
		close(pr.done)
	}()
	p.mu.Lock()
	p.procs = append(p.procs, pr)
	p.mu.Unlock()
	return pr
}

func (pr *proc) running() bool {
	select {
	case <-pr.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for a clean exit, returning its error.
func (pr *proc) stop(timeout time.Duration) error {
	if !pr.running() {
		return pr.err
	}
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
		return pr.err
	case <-time.After(timeout):
		_ = pr.cmd.Process.Kill()
		<-pr.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM", pr.name, timeout)
	}
}

// kill is kill -9: no chance to finish anything.
func (pr *proc) kill() {
	_ = pr.cmd.Process.Kill()
	<-pr.done
}

func (p *pipeline) close() {
	p.mu.Lock()
	procs := p.procs
	p.mu.Unlock()
	for _, pr := range procs {
		if err := pr.stop(30 * time.Second); err != nil && !strings.Contains(err.Error(), "signal: killed") {
			p.t.Logf("%s: %v", pr.name, err)
		}
	}
	// Logs never carry a secret: no ingest key, no admin token, no DSN password.
	for _, pr := range procs {
		b, _ := os.ReadFile(pr.log)
		for what, secret := range map[string]string{"an ingest key": p.key, "the admin token": p.adminToken(), "a DSN password": ":sluice@"} {
			if strings.Contains(string(b), secret) {
				p.t.Errorf("%s's log contains %s", pr.name, what)
			}
		}
	}
	if p.t.Failed() {
		for _, pr := range procs {
			b, _ := os.ReadFile(pr.log)
			p.t.Logf("---- %s log (last 40 lines)\n%s", pr.name, tail(string(b), 40))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topics := []string{"sluice.dlq." + p.targets["a"], "sluice.dlq." + p.targets["b"]}
	if !p.sharedTopic {
		topics = append(topics, p.topic)
	}
	client := p.kafka()
	_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitReady polls an ops endpoint's /readyz until it answers 200.
func waitReady(t testing.TB, pr *proc, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !pr.running() {
			b, _ := os.ReadFile(pr.log)
			t.Fatalf("%s exited: %v\n%s", pr.name, pr.err, tail(string(b), 30))
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not ready at %s after %v", pr.name, addr, timeout)
}

func (p *pipeline) startIngest() *proc {
	p.t.Helper()
	p.ingestAt, p.adminAt = testenv.FreeAddr(p.t), testenv.FreeAddr(p.t)
	return p.restartIngest()
}

// restartIngest starts ingest on the addresses startIngest chose.
func (p *pipeline) restartIngest() *proc {
	p.t.Helper()
	pr := p.start("ingest", "ingest", "--listen", p.ingestAt, "--admin-listen", p.adminAt)
	waitReady(p.t, pr, p.adminAt, 60*time.Second) // the public listener may speak TLS
	return pr
}

// applier is a running apply process and where its metrics are.
type applier struct {
	*proc
	addr string
}

func (p *pipeline) startApply(short string) *applier {
	p.t.Helper()
	return p.startApplyAt(short, p.listen[short])
}

// startApplyAt starts a replica of a target's applier with its ops server
// at addr (a second replica needs an address of its own).
func (p *pipeline) startApplyAt(short, addr string) *applier {
	p.t.Helper()
	pr := p.start("apply-"+short, "apply", "--target", p.targets[short], "--listen", addr)
	waitReady(p.t, pr, addr, 60*time.Second)
	return &applier{proc: pr, addr: addr}
}

// loadgenResult is loadgen's JSON summary plus the ids that got 202.
type loadgenResult struct {
	Source         string `json:"source"`
	Sent           int    `json:"sent"`
	Accepted       int    `json:"accepted"`
	UniqueAccepted int    `json:"unique_accepted"`
	Rejected       int    `json:"rejected"`
	Failed         int    `json:"failed"`
	Non2xx         int    `json:"non_2xx_answers"`
	Timeouts       int    `json:"timeouts"`
	Retries        int    `json:"retries"`
	ids            map[string]bool
}

// loadgen runs sluice loadgen against the pipeline's ingest and waits for it.
func (p *pipeline) loadgen(args ...string) loadgenResult {
	p.t.Helper()
	idsPath := filepath.Join(p.dir, "accepted-"+randomID())
	all := append([]string{"loadgen", "--url", "http://" + p.ingestAt + "/v1/events", "--key", p.key,
		"--json", "--quiet", "--accepted-out", idsPath}, args...)
	cmd := p.command(all...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var res loadgenResult
	if jerr := json.Unmarshal(stdout.Bytes(), &res); jerr != nil {
		p.t.Fatalf("loadgen: %v / %v\n%s\n%s", err, jerr, stdout.String(), stderr.String())
	}
	res.ids = readSet(p.t, idsPath)
	return res
}

func readSet(t testing.TB, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		set[sc.Text()] = true
	}
	return set
}

// db is the test's connection to a target's database, opened once.
func (p *pipeline) db(short string) *pgx.Conn {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		p.conns = map[string]*pgx.Conn{}
	}
	if c, ok := p.conns[short]; ok {
		return c
	}
	c := connect(p.t, p.dsns[short])
	p.conns[short] = c
	return c
}

// ids returns the ids of a source's rows in a target, and how many rows.
func (p *pipeline) ids(short, source string) (map[string]bool, int) {
	p.t.Helper()
	rows, err := p.db(short).Query(context.Background(), `SELECT id FROM sluice_events WHERE source = $1`, source)
	if err != nil {
		p.t.Fatal(err)
	}
	set := map[string]bool{}
	n := 0
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			p.t.Fatal(err)
		}
		set[id] = true
		n++
	}
	if err := rows.Err(); err != nil {
		p.t.Fatal(err)
	}
	return set, n
}

func (p *pipeline) count(short, source string) int {
	p.t.Helper()
	var n int
	if err := p.db(short).QueryRow(context.Background(), `SELECT count(*) FROM sluice_events WHERE source = $1`, source).Scan(&n); err != nil {
		p.t.Fatal(err)
	}
	return n
}

// waitCount waits until a target holds at least want rows of source.
func (p *pipeline) waitCount(short, source string, want int, timeout time.Duration) int {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	n := 0
	for time.Now().Before(deadline) {
		if n = p.count(short, source); n >= want {
			return n
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.t.Fatalf("target %s holds %d rows of %s after %v, want %d", short, n, source, timeout, want)
	return n
}

// topicEnd sums the log-end offsets of the pipeline's topic: how many records
// were ever appended to it.
func (p *pipeline) topicEnd() int64 {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// By partition number, not through Metadata, and retried: a broker
	// restarted by an earlier test may still be electing leaders.
	var reqs []kafka.OffsetRequest
	for part := range p.partitions {
		reqs = append(reqs, kafka.LastOffsetOf(part))
	}
	var last error
	for attempt := 0; attempt < 20 && ctx.Err() == nil; attempt++ {
		resp, err := p.kafka().ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{p.topic: reqs}})
		if err == nil {
			var total int64
			for _, po := range resp.Topics[p.topic] {
				if po.Error != nil {
					err = po.Error
					break
				}
				total += po.LastOffset
			}
			if err == nil {
				return total
			}
		}
		last = err
		time.Sleep(250 * time.Millisecond)
	}
	p.t.Fatalf("log end of %s: %v", p.topic, last)
	return 0
}

// kafka returns a client with a transport of its own: kafka-go's default
// transport is shared by the whole test process and caches metadata, which
// goes stale when a test restarts the broker.
func (p *pipeline) kafka() *kafka.Client {
	tr := &kafka.Transport{MetadataTTL: time.Second}
	p.t.Cleanup(tr.CloseIdleConnections)
	return &kafka.Client{Addr: kafka.TCP(p.brokers...), Timeout: 10 * time.Second, Transport: tr}
}

// metric scrapes one sample from a process's /metrics: name with its label
// set as it appears, e.g. `sluice_apply_events_total{result="applied",target="a-1"}`;
// 0 when the series is absent.
func metric(t testing.TB, addr, series string) float64 {
	t.Helper()
	v, err := scrape(addr, series)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func scrape(addr, series string) (float64, error) {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscanf(rest, "%g", &v); err != nil {
				return 0, err
			}
			return v, nil
		}
	}
	return 0, nil
}

// sameSet reports the first difference between want and got.
func sameSet(want, got map[string]bool) error {
	for id := range want {
		if !got[id] {
			return fmt.Errorf("id %s missing (want %d ids, got %d)", id, len(want), len(got))
		}
	}
	for id := range got {
		if !want[id] {
			return fmt.Errorf("id %s not expected (want %d ids, got %d)", id, len(want), len(got))
		}
	}
	return nil
}

func execOutput(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t testing.TB, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// waitFor polls cond every 100ms until it holds, failing the test after
// timeout with what it waited for.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
