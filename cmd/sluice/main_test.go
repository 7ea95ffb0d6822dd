package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("kafka: {brokers: [k:9092]}\ntargets: [{name: a, dsn: 'postgres://x'}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"no command prints usage and fails", nil, 2, "Commands:"},
		{"help succeeds", []string{"help"}, 0, "Commands:"},
		{"an unknown command names itself", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"--help of a command lists its flags", []string{"apply", "--help"}, 0, "-target"},
		{"apply without --target is a usage error", []string{"apply", "--config", cfg}, 2, "--target is required"},
		{"apply to an unknown target lists the known", []string{"apply", "--config", cfg, "--target", "zz"}, 2, `unknown target "zz" (configured: a)`},
		{"a missing config file is a configuration error", []string{"migrate", "--all", "--config", filepath.Join(dir, "none.yaml")}, 2, "none.yaml"},
		{"migrate needs one of --target or --all", []string{"migrate", "--config", cfg}, 2, "exactly one of"},
		{"ingest without keys names the field", []string{"ingest", "--config", cfg}, 2, "ingest.keys"},
		{"loadgen refuses a silly duplicate share", []string{"loadgen", "--duplicates", "2", "--url", "http://x", "--key", "k"}, 2, "--duplicates"},
		{"a stray argument is refused", []string{"ingest", "--config", cfg, "extra"}, 2, `unexpected argument "extra"`},
		{"version prints", []string{"version"}, 0, "sluice"},
		{"ctl without a command is a usage error", []string{"ctl"}, 2, "ctl needs a command"},
		{"ctl status of an unknown target lists the known", []string{"ctl", "status", "zz", "--config", cfg}, 2, `unknown target "zz"`},
		{"ctl takes flags after targets", []string{"ctl", "status", "zz", "--json", "--config", cfg}, 2, `unknown target "zz"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), c.args, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != c.wantCode || !strings.Contains(out, c.wantOut) {
				t.Fatalf("exit %d (want %d), output:\n%s\nwant it to contain %q", code, c.wantCode, out, c.wantOut)
			}
		})
	}
}

func TestEveryRouteAnswersErrorsInJSON(t *testing.T) {
	mux := opsMux(prometheus.NewRegistry(), func(context.Context) error { return errors.New("kafka down") })
	mux.HandleFunc("POST /v1/events", func(http.ResponseWriter, *http.Request) {})
	h := jsonErrors(mux)
	for _, c := range []struct {
		method, path string
		want         int
		allow        string
	}{
		{"GET", "/nope", 404, ""},
		{"GET", "/v1/events", 405, "POST"},
		{"DELETE", "/metrics", 405, "GET"},
		{"GET", "/readyz", 503, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		var body struct {
			Errors []struct{ Error string } `json:"errors"`
		}
		if rec.Code != c.want || json.Unmarshal(rec.Body.Bytes(), &body) != nil || len(body.Errors) != 1 || rec.Header().Get("Allow") != c.allow {
			t.Errorf("%s %s: %d %q (Allow %q), want %d in the JSON error shape", c.method, c.path, rec.Code, rec.Body, rec.Header().Get("Allow"), c.want)
		}
	}
}

func TestYAMLErrorsDoNotEchoValues(t *testing.T) {
	_, err := parseConfig("x.yaml", []byte("kafka:\n  brokers: [k:9092]\ningest:\n  keys: {secret: my-super-secret-ingest-key}\n"), func(string) string { return "" })
	if err == nil || strings.Contains(err.Error(), "my-super-secret") {
		t.Fatalf("error %v", err)
	}
}
