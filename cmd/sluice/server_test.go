package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestProfilesAreServedOnlyWhenAskedFor: /debug/pprof/ is off unless
// SLUICE_PPROF=1, and then on the ops listener beside /metrics.
func TestProfilesAreServedOnlyWhenAskedFor(t *testing.T) {
	ready := func(context.Context) error { return nil }
	for _, c := range []struct {
		env  string
		want int
	}{{"", http.StatusNotFound}, {"0", http.StatusNotFound}, {"1", http.StatusOK}} {
		t.Setenv("SLUICE_PPROF", c.env)
		rec := httptest.NewRecorder()
		opsMux(newRegistry(), ready).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
		if rec.Code != c.want {
			t.Errorf("SLUICE_PPROF=%q: /debug/pprof/ answered %d, want %d", c.env, rec.Code, c.want)
		}
	}
}
