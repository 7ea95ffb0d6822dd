package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testenv"
)

// TestReadyzAnswersFromTheBackgroundProbe: /readyz reads what the last
// background probe found: asking it dials no broker, and its 503 names
// none, whatever the probe's error says.
func TestReadyzAnswersFromTheBackgroundProbe(t *testing.T) {
	brokerDown := errors.New("no broker answers: dial tcp 10.1.2.3:9092: connect: connection refused")
	cases := []struct {
		name     string
		probes   []error // the outcomes of the background probes made, in order
		wantCode int
	}{
		{"before the first probe, /readyz is 503", nil, http.StatusServiceUnavailable},
		{"after a probe that answered, /readyz is 200", []error{nil}, http.StatusOK},
		{"after a probe that failed, /readyz is 503 naming no broker", []error{brokerDown}, http.StatusServiceUnavailable},
		{"a failed probe after an answered one turns /readyz to 503", []error{nil, brokerDown}, http.StatusServiceUnavailable},
		{"an answered probe after a failed one turns /readyz to 200", []error{brokerDown, nil}, http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var calls atomic.Int32
			var next error
			r := newReadiness(func(context.Context) error { calls.Add(1); return next }, time.Second, slog.New(slog.DiscardHandler))
			for _, err := range c.probes {
				next = err
				r.refresh(context.Background())
			}
			mux := probeMux(func(context.Context) error { return r.err() })
			for range 20 {
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
				if rec.Code != c.wantCode {
					t.Fatalf("/readyz answered %d %s, want %d", rec.Code, rec.Body, c.wantCode)
				}
				if body := rec.Body.String(); strings.Contains(body, "10.1.2.3") || strings.Contains(body, "9092") {
					t.Fatalf("/readyz names a broker: %s", body)
				}
			}
			if got := int(calls.Load()); got != len(c.probes) {
				t.Fatalf("the probe ran %d times for %d background probes: /readyz probed", got, len(c.probes))
			}
		})
	}
}

// TestTheReadinessProbeRunsAtOnceAndStopsWithItsRun: the background probe
// answers from the start, not one interval later, and its goroutine ends
// when the ingest run that owns it does.
func TestTheReadinessProbeRunsAtOnceAndStopsWithItsRun(t *testing.T) {
	probed := make(chan struct{}, 1)
	r := newReadiness(func(context.Context) error {
		select {
		case probed <- struct{}{}:
		default:
		}
		return nil
	}, time.Second, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.run(ctx, time.Hour) // no second probe within the test
	}()
	<-probed
	cancel()
	<-done
	if err := r.err(); err != nil {
		t.Fatalf("ready after a probe that answered: %v", err)
	}
}

// TestASIGHUPIsAReloadNeverTheEnd runs ingest in a child process of the
// test binary and sends it SIGHUP at the moments its handler used not to
// be installed: while it starts (before the keys are served) and while it
// drains on SIGTERM. Each must be a key reload, never the end of ingest.
func TestASIGHUPIsAReloadNeverTheEnd(t *testing.T) {
	if at := os.Getenv("SLUICE_TEST_HANGUP_AT"); at != "" {
		hangupChild(at, os.Getenv("SLUICE_TEST_HANGUP_CONFIG"))
		return
	}
	cases := []struct {
		name string
		at   string // the log line at which ingest is sent SIGHUP
	}{
		{"a SIGHUP while ingest starts is a reload", `msg="ingest keys" `},
		{"a SIGHUP while ingest drains is a reload", `msg="draining: `},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "sluice.yaml")
			// No broker listens at 127.0.0.1:1; a long drain_delay keeps the
			// drain going for the whole test.
			yaml := fmt.Sprintf(`kafka: {brokers: ["127.0.0.1:1"]}
ingest:
  keys: [hangup-test-key-0123456789]
  listen: %q
  admin_listen: %q
  drain_delay: 10m
targets: [{name: a, dsn: 'postgres://x'}]
`, testenv.FreeAddr(t), testenv.FreeAddr(t))
			if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a guard against a hang, not a measure
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestASIGHUPIsAReloadNeverTheEnd$")
			cmd.Env = append(os.Environ(), "SLUICE_TEST_HANGUP_AT="+c.at, "SLUICE_TEST_HANGUP_CONFIG="+cfg)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "HANGUP RELOADED KEYS") {
				t.Fatalf("ingest, sent SIGHUP at %q: %v\n%s", c.at, err, out)
			}
		})
	}
}

// hangupChild runs ingest with the configuration at cfg, starts its drain
// once it listens, and sends itself SIGHUP when a log line holds at. It
// exits 0 once the log says the keys were reloaded (or not: either way,
// the signal was caught).
func hangupChild(at, cfg string) {
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	log := lineWriter(func(line string) {
		switch {
		case strings.Contains(line, "ingest keys reloaded"), strings.Contains(line, "ingest keys not reloaded"):
			fmt.Println("HANGUP RELOADED KEYS")
			os.Exit(0)
		case strings.Contains(line, at):
			once.Do(func() { _ = syscall.Kill(os.Getpid(), syscall.SIGHUP) })
		}
		if strings.Contains(line, `msg="ingest listening"`) {
			cancel() // as SIGTERM does: the drain begins
		}
	})
	err := runIngest(ctx, []string{"--config", cfg}, io.Discard, log)
	fmt.Println("ingest returned before reloading its keys:", err)
	os.Exit(3)
}

// lineWriter calls line with each line written to it.
type lineWriter func(line string)

func (w lineWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w(line)
	}
	return len(p), nil
}

// TestTheStatusPageReportsAMalformedTokenInItsAddress runs /ui's script
// (admin/ui/app.js, which ingest serves on its admin listener) under node,
// with the browser stubbed: a #token= that is not URL-encoded must show an
// error and the login form, not leave the page "connecting…" for ever.
func TestTheStatusPageReportsAMalformedTokenInItsAddress(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	script, err := filepath.Abs("../../admin/ui/app.js")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name        string
		hash        string
		wantError   string // in the error shown; "" for none shown
		wantBearer  string // the Authorization sent; "" for no request
		wantNoToken bool   // no token is kept
	}{
		{"a malformed token shows an error and the login form", "#token=abc%E0%A4%A", "not URL-encoded", "", true},
		{"a lone % shows an error and the login form", "#token=%", "not URL-encoded", "", true},
		{"a well-formed token is decoded and sent", "#token=abc%20def", "", "Bearer abc def", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := exec.Command(node, "-e", statusPageHarness, script, c.hash).CombinedOutput()
			if err != nil {
				t.Fatalf("node: %v\n%s", err, out)
			}
			var got struct {
				ErrorShown bool     `json:"errorShown"`
				ErrorText  string   `json:"errorText"`
				LoginShown bool     `json:"loginShown"`
				Sent       []string `json:"sent"`
				Kept       *string  `json:"kept"`
				Hash       string   `json:"hash"`
				Unhandled  string   `json:"unhandled"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if got.Unhandled != "" || got.Hash != "" {
				t.Fatalf("an unhandled error (%q), or the token left in the address (%q)", got.Unhandled, got.Hash)
			}
			if c.wantError != "" && (!got.ErrorShown || !strings.Contains(got.ErrorText, c.wantError) || !got.LoginShown || len(got.Sent) > 0) {
				t.Fatalf("error shown %v %q, login shown %v, requests %q; want the error, the login form and no request",
					got.ErrorShown, got.ErrorText, got.LoginShown, got.Sent)
			}
			if c.wantError == "" && (got.ErrorShown || len(got.Sent) != 1 || got.Sent[0] != c.wantBearer) {
				t.Fatalf("error shown %v %q, requests %q; want one request with %q", got.ErrorShown, got.ErrorText, got.Sent, c.wantBearer)
			}
			if c.wantNoToken && got.Kept != nil {
				t.Fatalf("a token is kept: %q", *got.Kept)
			}
		})
	}
}

// statusPageHarness runs app.js (argv[1]) with the address's hash argv[2],
// against stubs of the DOM, sessionStorage and fetch, and prints what the
// page shows once its first poll settled.
const statusPageHarness = `
const fs = require("fs"), vm = require("vm");
const [script, hash] = process.argv.slice(1);
const elements = {};
const element = id => (elements[id] ||= { id, hidden: true, textContent: "", value: "",
  addEventListener() {}, replaceChildren() {}, prepend() {}, append() {} });
const kept = new Map([["sluice-admin-token", "an-older-token"]]);
const sent = [];
let unhandled = "";
process.on("unhandledRejection", e => { unhandled = String(e); });
const sandbox = {
  location: { hash, pathname: "/ui/" },
  window: { history: { replaceState() { sandbox.location.hash = ""; } } },
  sessionStorage: { getItem: k => kept.has(k) ? kept.get(k) : null, setItem: (k, v) => kept.set(k, String(v)), removeItem: k => kept.delete(k) },
  document: { getElementById: element },
  fetch: async (url, opts) => { sent.push(opts.headers.Authorization); return { status: 200, ok: true, json: async () => [] }; },
  setTimeout() {}, // one poll is enough
};
vm.runInNewContext(fs.readFileSync(script, "utf8"), sandbox);
setImmediate(() => setImmediate(() => {
  const error = element("error"), login = element("login");
  process.stdout.write(JSON.stringify({ errorShown: !error.hidden, errorText: error.textContent, loginShown: !login.hidden,
    sent, kept: kept.has("sluice-admin-token") ? kept.get("sluice-admin-token") : null, hash: sandbox.location.hash, unhandled }));
}));
`
