package admin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/kafkaadmin"
	"github.com/sluicehq/sluice/operations"
)

const adminToken = "admin-token-0123456789"

func newTestHandler(t *testing.T) *Handler {
	t.Helper()
	cluster := kafkaadmin.New(kafkaadmin.Config{Brokers: []string{"127.0.0.1:1"}})
	ops := operations.New(operations.Config{Cluster: cluster, Targets: []operations.Target{{Name: "a"}, {Name: "b"}}})
	t.Cleanup(func() { ops.Close(); cluster.Close() })
	h, err := NewHandler(Config{Ops: ops, Token: adminToken, IsIngestKey: isKey("ingest-key-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestTheAdminTokenMustBeItsOwn(t *testing.T) {
	ops := operations.New(operations.Config{Cluster: kafkaadmin.New(kafkaadmin.Config{Brokers: []string{"127.0.0.1:1"}})})
	defer ops.Close()
	for name, cfg := range map[string]Config{
		"no operations":          {Token: "admin-token-0123456789"},
		"a short token":          {Ops: ops, Token: "short"},
		"an ingest key as token": {Ops: ops, Token: "ingest-key-0123456789", IsIngestKey: isKey("ingest-key-0123456789")},
	} {
		if _, err := NewHandler(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestAdminAnswers(t *testing.T) {
	h := newTestHandler(t)
	cases := []struct {
		name, method, path, auth string
		want                     int
		wantBody                 string
	}{
		{"no token is refused", "GET", "/v1/admin/targets", "", 401, "admin token"},
		{"a wrong token is refused", "POST", "/v1/admin/targets/b/pause", "Bearer nope-0123456789abcdef", 401, "admin token"},
		{"an ingest key is not an admin token", "POST", "/v1/admin/targets/b/pause", "Bearer ingest-key-0123456789", 401, "ingest keys are not admin tokens"},
		{"an unknown target is named", "POST", "/v1/admin/targets/zz/pause", "Bearer " + adminToken, 404, `unknown target \"zz\" (configured: a, b)`},
		{"a rewind without a body is refused", "POST", "/v1/admin/targets/b/rewind", "Bearer " + adminToken, 400, "to_time"},
		{"verify of an unknown target is refused", "GET", "/v1/admin/verify?a=a&b=zz", "Bearer " + adminToken, 404, "unknown target"},
		{"the status page needs no token to load", "GET", "/ui/", "", 200, "<title>sluice status</title>"},
		{"its script is served", "GET", "/ui/app.js", "", 200, "/v1/admin/targets"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, c.path, nil)
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.want || !strings.Contains(rec.Body.String(), c.wantBody) {
				t.Fatalf("%s %s: %d %s; want %d containing %q", c.method, c.path, rec.Code, rec.Body, c.want, c.wantBody)
			}
		})
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/ui", nil))
	if rec.Code != http.StatusFound {
		t.Errorf("/ui answers %d, want a redirect to /ui/", rec.Code)
	}
}

func TestUnknownAdminRoutesAnswerInJSON(t *testing.T) {
	h := newTestHandler(t)
	for _, c := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{"GET", "/v1/admin/nope", http.StatusNotFound, ""},
		{"POST", "/v1/admin/targets", http.StatusMethodNotAllowed, "GET"},
		{"GET", "/v1/admin/targets/a/pause", http.StatusMethodNotAllowed, "POST"},
		{"GET", "/ui/nope.js", http.StatusNotFound, ""},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(c.method, c.path, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		h.ServeHTTP(rec, req)
		if rec.Code != c.code || rec.Header().Get("Allow") != c.allow || rec.Header().Get("Content-Type") != "application/json" || !strings.Contains(rec.Body.String(), `"errors"`) {
			t.Errorf("%s %s: %d (Allow %q) %s %s, want %d (Allow %q) in JSON", c.method, c.path, rec.Code, rec.Header().Get("Allow"),
				rec.Header().Get("Content-Type"), rec.Body, c.code, c.allow)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/app.js", nil))
	if rec.Code != 200 || !strings.Contains(rec.Header().Get("Content-Type"), "javascript") {
		t.Errorf("GET /ui/app.js: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
}

func isKey(key string) func(string) bool { return func(s string) bool { return s == key } }

// TestTheStatusPageAndAPICarrySecurityHeaders: no framing, no sniffing, no
// script but the page's own, no caching of answers.
func TestTheStatusPageAndAPICarrySecurityHeaders(t *testing.T) {
	h := newTestHandler(t)
	for _, path := range []string{"/ui/", "/ui/app.js", "/v1/admin/targets"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		hd := rec.Header()
		csp := hd.Get("Content-Security-Policy")
		if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
			hd.Get("X-Content-Type-Options") != "nosniff" || hd.Get("X-Frame-Options") != "DENY" || hd.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: headers %v", path, hd)
		}
	}
}
