package browser

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/heraldmq/herald/tests/localcluster"
)

// startEmbedded runs the embedded default, bin/herald as `make run` runs
// it (data under a temp dir), on free ports, with args added to its
// command line; it returns its HTTP base URL and stops at the end of the
// test.
func startEmbedded(t *testing.T, args ...string) string {
	t.Helper()
	bin := filepath.Join(localcluster.BinDir(), "herald")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run `make build`", bin)
	}
	p := freePorts(t, 4)
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(p[i]) }
	dir := t.TempDir()
	cmd := exec.Command(bin, append([]string{"--data-dir", filepath.Join(dir, "data"),
		"--mqtt-addr", addr(0), "--http-addr", addr(1), "--admin-addr", addr(2), "--ops-addr", addr(3)}, args...)...)
	log, err := os.Create(filepath.Join(dir, "herald.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr(3) + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return "http://" + addr(1)
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("herald exited at start:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("herald not ready within 60s")
		}
	}
}

// corsPage is a web app of its own origin using the edge at base: it
// publishes with a JSON body (a request that needs a CORS preflight),
// reads the answer and the X-Herald-Edge header, and receives its message
// back over an EventSource. window.result says how it went.
func corsPage(base string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><body><script>
window.result = "pending";
const base = %q, topic = "cors/" + Date.now(), payload = JSON.stringify({from: location.origin});
let got = null;
const check = () => {
  if (got === null || window.edge === undefined) return;
  window.result = got === payload && window.edge ? "ok" : "unexpected " + got + " from edge " + window.edge;
};
const es = new EventSource(base + "/sse?topic=" + encodeURIComponent(topic));
es.onerror = () => { if (window.result === "pending") window.result = "sse error"; };
es.onopen = async () => {
  try {
    const r = await fetch(base + "/publish?topic=" + encodeURIComponent(topic), {method: "POST",
      headers: {"Content-Type": "application/json"}, body: payload});
    const answer = await r.json();
    window.published = r.status + " " + answer.position;
    window.edge = r.headers.get("X-Herald-Edge");
    check();
  } catch (e) { window.result = "publish failed: " + e; }
};
es.onmessage = (e) => { got = JSON.parse(e.data).payload; es.close(); check(); };
</script></body>`, base)
	})
}

// TestEmbeddedDefaultCORS ensures a web app served from another origin can
// use the embedded default (bin/herald, as `make run` runs it) when that
// origin is given by one flag, --cors-origins: in headless Chromium the
// page publishes through a preflighted fetch, reads the answer and the
// X-Herald-Edge header, and receives its message over SSE. A page of an
// origin not listed gets nothing: the browser refuses it the answers.
func TestEmbeddedDefaultCORS(t *testing.T) {
	allowed := httptest.NewUnstartedServer(nil)
	other := httptest.NewUnstartedServer(nil)
	allowed.Start()
	other.Start()
	t.Cleanup(allowed.Close)
	t.Cleanup(other.Close)
	base := startEmbedded(t, "--cors-origins", allowed.URL)
	allowed.Config.Handler, other.Config.Handler = corsPage(base), corsPage(base)
	if strings.HasPrefix(allowed.URL, base) {
		t.Fatal("the page must be of another origin than the edge")
	}

	ctx := startBrowser(t)
	run := func(page string) (result, published string) {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx, chromedp.Navigate(page)); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			result = evalString(t, tctx, `Promise.resolve(window.result)`)
			if result != "pending" {
				break
			}
		}
		published = evalString(t, tctx, `Promise.resolve(String(window.published))`)
		return result, published
	}
	if result, published := run(allowed.URL); result != "ok" || !strings.HasPrefix(published, "200 ") {
		t.Errorf("the allowed origin's page: %s (publish %s), want ok", result, published)
	}
	if result, _ := run(other.URL); result == "ok" {
		t.Error("a page of an origin not listed read the edge's answers")
	}
}
