package admin

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/consumer"
)

// Target is one configured target.
type Target struct {
	Name string
	DSN  string
	// MetricsAddr is host:port of the applier's ops server, where its
	// breaker state is read; empty when unknown.
	MetricsAddr string
}

// TargetView is one target as operators see it.
type TargetView struct {
	consumer.TargetStatus
	State   string           `json:"state"`   // running or paused: the desired state
	Applier string           `json:"applier"` // up, unreachable or unknown: whether its metrics answer
	Breaker string           `json:"breaker"` // closed, half-open, open or unknown
	Rewind  *consumer.Rewind `json:"rewind,omitempty"`
}

// Status asks Kafka, the control topic, each target's database and each
// applier's metrics about targets.
func Status(ctx context.Context, brokers []string, topic string, targets []Target) ([]TargetView, error) {
	ctl := consumer.NewControl(brokers, "")
	defer ctl.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	desired, err := ctl.Current(cctx)
	cancel()
	if err != nil {
		desired = nil // no control topic yet: nobody paused anything
	}
	views := make([]TargetView, 0, len(targets))
	for _, t := range targets {
		ictx, cancel := context.WithTimeout(ctx, 15*time.Second)
		st, err := consumer.Inspect(ictx, consumer.InspectConfig{Target: t.Name, Brokers: brokers, Topic: topic, DSN: t.DSN})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		v := TargetView{TargetStatus: st, State: "running", Applier: "unknown", Breaker: "unknown"}
		if d, ok := desired[t.Name]; ok {
			if d.Paused {
				v.State = "paused"
			}
			v.Rewind = d.Rewind
		}
		if t.MetricsAddr != "" {
			v.Applier, v.Breaker = scrapeApplier(ctx, t)
		}
		views = append(views, v)
	}
	return views, nil
}

// scrapeApplier reads the applier's own view from its /metrics.
func scrapeApplier(ctx context.Context, t Target) (applier, breaker string) {
	host, port, err := net.SplitHostPort(t.MetricsAddr)
	if err != nil {
		return "unknown", "unknown"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "unreachable", "unknown"
	}
	defer resp.Body.Close()
	series := `sluice_breaker_state{target="` + t.Name + `"} `
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return "up", consumer.BreakerState(int(n)).String()
		}
	}
	return "up", "unknown"
}
