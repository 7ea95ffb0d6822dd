package check

// What the sluice binary accepts, asked of the binary itself wherever it can
// say: its flags (`sluice CMD --help`), its configuration (loading a file
// exactly as a command does) and the variables that carry the targets' DSNs.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"
)

type result struct {
	code int
	out  string
}

// runs remembers what sluice answered: it answers the same to the same
// arguments and environment (the configuration files it reads are written
// once, where their content names them: loadConfig), and TestCatches asks
// much the same many times.
var runs sync.Map

// run runs sluice with args and exactly env (nothing of the caller's
// environment leaks in), and returns its exit code and its output.
func run(env []string, args ...string) (int, string, error) {
	key := strings.Join(env, "\x00") + "\x01" + strings.Join(args, "\x00")
	if r, ok := runs.Load(key); ok {
		return r.(result).code, r.(result).out, nil
	}
	code, out, err := runOnce(env, args)
	if err == nil {
		runs.Store(key, result{code, out})
	}
	return code, out, err
}

func runOnce(env, args []string) (int, string, error) {
	cmd := exec.Command(sluice, args...)
	cmd.Env = append([]string{}, env...) // never nil, which would mean "inherit"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), out.String(), nil
	}
	return 0, out.String(), err
}

// flagSpec is one flag of a command: whether it takes a value.
type flagSpec struct{ takesValue bool }

var (
	helpMu    sync.Mutex
	helpCache = map[string]map[string]flagSpec{}
)

// helpLine is a flag as flag.PrintDefaults lists it: "  -name type" (a type
// word when the flag takes a value), the usage on the next line or after a tab.
var helpLine = regexp.MustCompile(`^  -([A-Za-z0-9][\w-]*)(?: (\S+))?(?:\t.*)?$`)

// flags are the flags `sluice cmd --help` lists.
func flags(cmd string) (map[string]flagSpec, error) {
	helpMu.Lock()
	defer helpMu.Unlock()
	if f, ok := helpCache[cmd]; ok {
		return f, nil
	}
	code, out, err := run(nil, cmd, "--help")
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, fmt.Errorf("sluice %s --help exited %d: %s", cmd, code, out)
	}
	f := map[string]flagSpec{}
	for _, line := range strings.Split(out, "\n") {
		if g := helpLine.FindStringSubmatch(line); g != nil {
			f[g[1]] = flagSpec{takesValue: g[2] != ""}
		}
	}
	if len(f) == 0 {
		return nil, fmt.Errorf("sluice %s --help lists no flags:\n%s", cmd, out)
	}
	helpCache[cmd] = f
	return f, nil
}

// parseArgs reads a container's args the way sluice's flag package does:
// the command, then "--name value", "--name=value" or a bare boolean. It
// names every flag the command does not list and every positional argument.
func parseArgs(args []string) (cmd string, values map[string]string, err error) {
	if len(args) == 0 {
		return "", nil, errors.New("no args: the image's entrypoint is sluice and needs a command")
	}
	cmd, values = args[0], map[string]string{}
	known, err := flags(cmd)
	if err != nil {
		return cmd, nil, err
	}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return cmd, nil, fmt.Errorf("unexpected argument %q: sluice %s takes flags only", a, cmd)
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		spec, ok := known[name]
		if !ok {
			return cmd, nil, fmt.Errorf("sluice %s has no flag --%s (sluice %s --help lists %s)", cmd, name, cmd, strings.Join(sortedKeys(known), ", "))
		}
		if spec.takesValue && !hasValue {
			if i+1 == len(args) {
				return cmd, nil, fmt.Errorf("--%s needs a value", name)
			}
			i++
			value = args[i]
		}
		values[name] = value
	}
	return cmd, values, nil
}

// acceptsArgs is the binary's own word on a command line: the args followed
// by --help parse (every flag known, every value of its type) and stop there.
func acceptsArgs(args []string) error {
	code, out, err := run(nil, append(append([]string{}, args...), "--help")...)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("sluice %s --help exited %d: %s", strings.Join(args, " "), code, firstLine(out))
	}
	return nil
}

var (
	envOnce  sync.Once
	envNames map[string]bool // exact names
	envErr   error
)

// envLiteral is a variable name as the code spells it: a name ending in '_'
// is the start of one the code completes (SLUICE_TARGET_<NAME>_DSN).
var envLiteral = regexp.MustCompile(`"(SLUICE_[A-Z0-9_]*)"`)

// readEnvNames are the SLUICE_* names that cmd/sluice's code spells out:
// the variables the binary reads, but for the per-target DSNs, whose names
// the binary itself gives (dsnVars).
func readEnvNames() (map[string]bool, error) {
	envOnce.Do(func() {
		files, err := filepath.Glob(filepath.Join(kubeDir, "..", "..", "cmd", "sluice", "*.go"))
		if err != nil || len(files) == 0 {
			envErr = fmt.Errorf("no Go files in cmd/sluice (%v)", err)
			return
		}
		envNames = map[string]bool{}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				envErr = err
				return
			}
			for _, g := range envLiteral.FindAllStringSubmatch(string(src), -1) {
				if !strings.HasSuffix(g[1], "_") {
					envNames[g[1]] = true
				}
			}
		}
	})
	return envNames, envErr
}

// sluiceConfig is the part of the configuration file the manifests depend
// on. Durations stay strings until asked for: the binary judges the file.
type sluiceConfig struct {
	Kafka struct {
		Partitions *int `json:"partitions"`
	} `json:"kafka"`
	Ingest struct {
		AdminToken   string      `json:"admin_token"`
		Keys         []ingestKey `json:"keys"`
		DrainDelay   string      `json:"drain_delay"`
		WriteTimeout string      `json:"write_timeout"`
	} `json:"ingest"`
	Apply struct {
		ApplyTimeout string `json:"apply_timeout"`
	} `json:"apply"`
	Targets []struct {
		Name string `json:"name"`
		DSN  string `json:"dsn"`
	} `json:"targets"`
}

// ingestKey is an entry of ingest.keys: a bare string (a key in clear) or a
// mapping (a key in clear under "key", or its digest under "sha256").
type ingestKey struct{ clear bool }

func (k *ingestKey) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		k.clear = true // a bare string
		return nil
	}
	_, k.clear = m["key"]
	return nil
}

// duration reads one of the configuration's durations, which must be given
// explicitly: the manifests' grace periods are derived from them, and a
// default copied here could drift from the binary's.
func duration(key, v string) (time.Duration, error) {
	if v == "" {
		return 0, fmt.Errorf("%s: not set; set it in the ConfigMap's file, since a grace period is derived from it", key)
	}
	return time.ParseDuration(v)
}

// configFile is a configuration file as a container sees it: every file of
// its ConfigMap written into dir, as the volume would mount them.
type configFile struct {
	dir, name string
	cfg       sluiceConfig
	// dsnVars is, per target, the variable the binary reads its DSN from.
	dsnVars map[string]string
}

func (c *configFile) path() string { return filepath.Join(c.dir, c.name) }

// quote is the binary's message about the file, on one line, without the
// temporary directory.
func (c *configFile) quote(out string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(out, c.dir+string(filepath.Separator), "")), " ")
}

// noSuchTarget is a target name no configuration has: `sluice migrate
// --target` with it loads and validates the file exactly as every command
// does, then stops at "unknown target" before it connects to anything.
const noSuchTarget = "k8s-check-no-such-target"

var unknownTarget = regexp.MustCompile(`unknown target "` + noSuchTarget + `" \(configured: ([^)]*)\)`)

// validate has the binary load the file with env (a container's environment)
// and returns the target names it reports.
func (c *configFile) validate(env []string) ([]string, error) {
	code, out, err := run(env, "migrate", "--config", c.path(), "--target", noSuchTarget)
	if err != nil {
		return nil, err
	}
	g := unknownTarget.FindStringSubmatch(out)
	if code != 2 || g == nil {
		return nil, fmt.Errorf("sluice does not accept the configuration %s with this environment: %s", c.name, c.quote(out))
	}
	if g[1] == "" {
		return nil, nil
	}
	return strings.Split(g[1], ", "), nil
}

var (
	configsMu sync.Mutex
	configs   = map[string]*configFile{}
	configErr = map[string]error{}
)

// loadConfig writes a ConfigMap's files into a directory of configDir named
// by their content, as the volume would mount them, and finds out from the
// binary which variable each target's DSN comes from.
func loadConfig(data map[string]string, name string) (*configFile, error) {
	h := sha256.New()
	for _, k := range sortedKeys(data) {
		fmt.Fprintf(h, "%q=%q\n", k, data[k])
	}
	fmt.Fprintf(h, "%q", name)
	key := hex.EncodeToString(h.Sum(nil))[:16]
	configsMu.Lock()
	defer configsMu.Unlock()
	if c, ok := configs[key]; ok {
		return c, configErr[key]
	}
	c, err := writeConfig(filepath.Join(configDir, key), data, name)
	configs[key], configErr[key] = c, err
	return c, err
}

func writeConfig(dir string, data map[string]string, name string) (*configFile, error) {
	raw, ok := data[name]
	if !ok {
		return nil, fmt.Errorf("the ConfigMap has no key %s", name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			return nil, err
		}
	}
	c := &configFile{dir: dir, name: name, dsnVars: map[string]string{}}
	// The file as it is first (a target's DSN may be left to the
	// environment), so that an error names its lines.
	code, out, err := run(nil, "migrate", "--config", c.path(), "--target", noSuchTarget)
	if err != nil {
		return nil, err
	}
	if !unknownTarget.MatchString(out) && !dsnRequired.MatchString(out) {
		return nil, fmt.Errorf("sluice does not accept the configuration %s (exit %d): %s", name, code, c.quote(out))
	}
	if err := yaml.Unmarshal([]byte(raw), &c.cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	vars, err := dsnVars(dir, raw, len(c.cfg.Targets))
	if err != nil {
		return nil, err
	}
	for i, t := range c.cfg.Targets {
		c.dsnVars[t.Name] = vars[i]
	}
	return c, nil
}

var dsnRequired = regexp.MustCompile(`targets\[(\d+)\]\.dsn: required \(or set (SLUICE_[A-Z0-9_]+)\)`)

// dsnVars asks the binary which variable each target's DSN is read from: a
// copy of the file without DSNs fails on the first target without one and
// names its variable; setting it moves the failure on to the next target.
func dsnVars(dir, raw string, targets int) (map[int]string, error) {
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		return nil, err
	}
	ts, _ := doc["targets"].([]any)
	for _, t := range ts {
		if m, ok := t.(map[string]any); ok {
			delete(m, "dsn")
		}
	}
	stripped, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, ".k8s-check-without-dsns.yaml")
	if err := os.WriteFile(path, stripped, 0o600); err != nil {
		return nil, err
	}
	vars, env := map[int]string{}, []string{}
	for range targets + 1 {
		code, out, err := run(env, "migrate", "--config", path, "--target", noSuchTarget)
		if err != nil {
			return nil, err
		}
		if unknownTarget.MatchString(out) {
			if len(vars) != targets {
				return nil, fmt.Errorf("the binary named the DSN variables of %d of %d targets", len(vars), targets)
			}
			return vars, nil
		}
		g := dsnRequired.FindStringSubmatch(out)
		if g == nil {
			return nil, fmt.Errorf("sluice exited %d on the configuration without DSNs, without naming a DSN variable: %s", code, firstLine(out))
		}
		var i int
		fmt.Sscan(g[1], &i)
		vars[i] = g[2]
		env = append(env, g[2]+"=postgres://k8s-check@invalid/check")
	}
	return nil, errors.New("the binary kept asking for DSN variables")
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
