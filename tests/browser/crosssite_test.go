package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestCrossSiteWrites ensures a page of another origin cannot publish
// with a visitor's herald_token cookie, in a real browser: Chromium holds
// the cookie for the edge's host, and a page served from another port of
// that host (another origin of the same site, so the cookie goes along,
// as for a sibling subdomain) submits a text/plain form to POST /publish
// and sends a no-cors fetch. The edge refuses both (403) and stores
// nothing; a page of the edge's own origin still publishes with the
// cookie.
func TestCrossSiteWrites(t *testing.T) {
	c := startCluster(t)
	token := tenantKey(t, c, "csrf")
	e := c.A
	edgeURL, _ := url.Parse(e.HTTP)

	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><body>
<form id=f method=POST enctype="text/plain" action="%[1]s/publish?topic=csrf/form"><input name=a value=b></form>
<script>
fetch(%[1]q + "/publish?topic=csrf/fetch", {method: "POST", mode: "no-cors", credentials: "include", body: "x"})
  .finally(() => document.getElementById("f").submit());
</script></body>`, e.HTTP)
	}))
	t.Cleanup(attacker.Close)
	if strings.Split(strings.TrimPrefix(attacker.URL, "http://"), ":")[0] != edgeURL.Hostname() {
		t.Fatalf("attacker %s and edge %s must share a host", attacker.URL, e.HTTP)
	}

	cursor := pollCursor(t, e.HTTP, token)
	ctx := startBrowser(t)
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	setCookie := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.SetCookie, network.SetCookieParams{Name: "herald_token", Value: token, URL: e.HTTP + "/"})
		return err
	})
	// The form navigates the tab to the edge's answer.
	if err := chromedp.Do(tctx, setCookie, chromedp.Navigate(attacker.URL)); err != nil {
		t.Fatal(err)
	}
	// The tab navigates under the poll: evaluations may fail meanwhile.
	var answer string
	for deadline := time.Now().Add(20 * time.Second); ; {
		answer, _ = chromedp.Run(tctx, chromedp.Evaluate[string](
			`location.pathname === "/publish" && document.body ? document.body.innerText : ""`))
		if answer != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the form's answer not loaded within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(answer, `"not_authorized"`) {
		t.Errorf("cross-site form POST answered %s, want 403 not_authorized", answer)
	}
	if got := pollTopics(t, e.HTTP, token, cursor); len(got) != 0 {
		t.Errorf("cross-site requests stored %v", got)
	}

	// The edge's own origin (its example page) publishes with the cookie.
	if err := chromedp.Do(tctx, chromedp.Navigate(e.HTTP+"/")); err != nil {
		t.Fatal(err)
	}
	status := evalString(t, tctx, `fetch("/publish?topic=csrf/own", {method: "POST", credentials: "same-origin",
		headers: {"Content-Type": "application/octet-stream"}, body: "x"}).then(r => String(r.status))`)
	if status != "200" {
		t.Errorf("same-origin publish with the cookie: %s, want 200", status)
	}
	if got := pollTopics(t, e.HTTP, token, cursor); strings.Join(got, ",") != "csrf/own" {
		t.Errorf("stored %v, want [csrf/own]", got)
	}
}

// evalString evaluates a JavaScript expression (awaiting a promise) that
// yields a string.
func evalString(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return s
}

// tenantKey creates a tenant through the admin API with an API key that
// may do everything in it, waits until the edges admit it, and returns
// its token.
func tenantKey(t *testing.T, c *cluster, tenant string) string {
	t.Helper()
	call := func(path string, body, out any) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, c.lc.Admin+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+c.lc.AdminToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %s", path, resp.Status)
		}
		if out != nil {
			_ = json.NewDecoder(resp.Body).Decode(out)
		}
	}
	call("/v1/tenants", map[string]any{"id": tenant}, nil)
	var key struct{ Token string }
	call("/v1/tenants/"+tenant+"/keys", map[string]any{"capabilities": []map[string]any{
		{"filter": "#", "actions": []string{"ACTION_PUBLISH", "ACTION_SUBSCRIBE", "ACTION_HISTORY"}}}}, &key)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if pollCursorStatus(c.A.HTTP, key.Token) == http.StatusOK && pollCursorStatus(c.B.HTTP, key.Token) == http.StatusOK {
			return key.Token
		}
		if time.Now().After(deadline) {
			t.Fatal("key not admitted by both edges after 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func pollCursorStatus(base, token string) int {
	req, _ := http.NewRequest(http.MethodGet, base+"/poll?topic=csrf/%23&timeout=0", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// pollCursor returns the current end of the tenant's csrf/# messages.
func pollCursor(t *testing.T, base, token string) string {
	t.Helper()
	var out struct{ Cursor string }
	pollJSON(t, base+"/poll?topic=csrf/%23&timeout=0", token, &out)
	return out.Cursor
}

// pollTopics returns the topics stored under csrf/# after cursor.
func pollTopics(t *testing.T, base, token, cursor string) []string {
	t.Helper()
	var out struct {
		Messages []struct{ Topic string } `json:"messages"`
	}
	pollJSON(t, base+"/poll?topic=csrf/%23&timeout=0&cursor="+cursor, token, &out)
	var topics []string
	for _, m := range out.Messages {
		topics = append(topics, m.Topic)
	}
	return topics
}

func pollJSON(t *testing.T, u, token string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}
