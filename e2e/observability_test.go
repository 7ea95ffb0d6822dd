package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDashboardAndAlertsNameRealMetrics scrapes a running ingest and applier
// and checks that every query of the Grafana dashboard and of the alert
// rules names a metric that sluice really exports.
func TestDashboardAndAlertsNameRealMetrics(t *testing.T) {
	parallel(t)
	p := newPipeline(t, pipelineOptions{extraTarget: shopTargets(t)})
	p.startIngest()
	a := p.startApply("a")
	p.loadgen("--shop", "--events", "200", "--duplicates", "0.1")
	// A refused request, so that the 4xx series exist too.
	resp, err := http.Post("http://"+p.ingestAt+"/v1/events", "application/json", strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
	}

	exported := map[string]bool{}
	for _, addr := range []string{p.adminAt, a.addr} {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if line == "" || line[0] == '#' {
				continue
			}
			name := line[:strings.IndexAny(line, "{ ")]
			exported[name] = true
		}
	}

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	raw, err := os.ReadFile("../deploy/grafana/dashboards/sluice.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	queries := map[string]string{}
	for _, pn := range dash.Panels {
		for _, tg := range pn.Targets {
			queries["dashboard panel "+pn.Title+": "+tg.Expr] = tg.Expr
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	raw, err = os.ReadFile("../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			queries["alert "+r.Alert] = r.Expr
		}
	}
	if len(queries) < 15 {
		t.Fatalf("found only %d queries", len(queries))
	}
	names := regexp.MustCompile(`\b(sluice_[a-z_]+|process_[a-z_]+|go_[a-z_]+)\b`)
	for where, expr := range queries {
		found := names.FindAllString(expr, -1)
		if len(found) == 0 && !strings.Contains(expr, "up{") {
			t.Errorf("%s names no metric", where)
		}
		for _, name := range found {
			if !exported[name] {
				t.Errorf("%s uses %s, which no sluice process exports", where, name)
			}
		}
	}
}
