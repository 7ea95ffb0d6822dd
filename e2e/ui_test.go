package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's Chromium; `make integration` installs it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("SLUICE_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	msg := "no Chromium: install Debian's chromium package (make integration does) or set SLUICE_CHROMIUM"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TestStatusPageShowsAPauseLive loads /ui in headless Chromium, pauses B
// with ctl, and watches the page turn B paused without a reload. The
// screenshot is kept in the test artifacts.
func TestStatusPageShowsAPauseLive(t *testing.T) {
	p := newPipeline(t, pipelineOptions{})
	browser := chromiumPath(t)
	p.startIngest()
	p.startApply("a")
	p.startApply("b")
	p.loadgen("--events", "2000", "--duplicates", "0")

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	b := `[data-target="` + p.targets["b"] + `"]`
	url := "http://" + p.adminAt + "/ui/#token=" + p.adminToken()
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(b+`[data-state="running"]`))); err != nil {
		t.Fatalf("the page never showed B running: %v", err)
	}
	p.ctl("pause", p.targets["b"])
	paused := time.Now()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(b+`[data-state="paused"]`))); err != nil {
		t.Fatalf("the page never showed B paused: %v", err)
	}
	shown := time.Since(paused)
	changes, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#changes")))
	if err != nil {
		t.Fatal(err)
	}
	// Publish while B is paused: its lag climbs on the chart, A's stays flat.
	p.loadgen("--events", "3000", "--duplicates", "0", "--rate", "1000")
	_ = chromedp.Do(ctx, chromedp.Sleep(2*time.Second))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(changes, p.targets["b"]+": running → paused") {
		t.Errorf("the page's change log says %q", changes)
	}
	dir := os.Getenv("SLUICE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", ".artifacts")
	}
	_ = os.MkdirAll(dir, 0o755)
	shot := filepath.Join(dir, "ui-target-paused.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("the page showed B paused %v after ctl pause returned; screenshot %s", shown.Round(time.Millisecond), shot)

	// The same operations over the admin API: resume B, and the page follows.
	api := func(method, path, token string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+p.adminAt+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	// None of it is on the public listener, token or not.
	for _, path := range []string{"/v1/admin/targets", "/ui/", "/metrics"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+p.ingestAt+path, nil)
		req.Header.Set("Authorization", "Bearer "+p.adminToken())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s on the public listener: %d, want 404", path, resp.StatusCode)
		}
	}
	if code, body := api("POST", "/v1/admin/targets/"+p.targets["b"]+"/resume", p.adminToken()); code != 200 || !strings.Contains(body, `"resumed"`) {
		t.Fatalf("resume over the admin API: %d %s", code, body)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(b+`[data-state="running"]`))); err != nil {
		t.Fatalf("the page never showed B running again: %v", err)
	}
	if code, body := api("POST", "/v1/admin/targets/"+p.targets["b"]+"/resume", p.adminToken()); code != 200 || !strings.Contains(body, "not paused: nothing to do") {
		t.Errorf("resuming a running target over the API: %d %s", code, body)
	}
	if code, body := api("GET", "/v1/admin/targets/nosuch/dlq", p.adminToken()); code != 404 || !strings.Contains(body, `unknown target`) {
		t.Errorf("unknown target over the API: %d %s", code, body)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		code, body := api("GET", "/v1/admin/verify?a="+p.targets["a"]+"&b="+p.targets["b"], p.adminToken())
		if code == 200 && strings.Contains(body, `"agree":true`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("verify over the API never agreed: %d %s", code, body)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// The admin API behind the page refuses an ingest key.
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.adminAt+"/v1/admin/targets", nil)
	req.Header.Set("Authorization", "Bearer "+p.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the admin API answered %d to an ingest key", resp.StatusCode)
	}
}
