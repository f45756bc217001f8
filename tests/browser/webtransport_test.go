package browser

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/heraldmq/herald/pkg/testserver"
)

// webTransportCert writes a self-signed certificate for 127.0.0.1 that a
// browser trusts by its hash (serverCertificateHashes): ECDSA P-256, valid
// 10 days — the W3C rule is 14 days at most — and returns its files.
func webTransportCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, _ = testserver.LocalhostCertFiles(t, 10*24*time.Hour)
	return certFile, keyFile
}

// pageTransport returns the transport the page runs on and those its
// "auto" left.
func pageTransport(t *testing.T, ctx context.Context) (string, []string) {
	t.Helper()
	transport, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.herald.transport`))
	if err != nil {
		t.Fatal(err)
	}
	fallbacks, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.herald.fallbacks`))
	if err != nil {
		t.Fatal(err)
	}
	return transport, fallbacks
}

// TestBrowserWebTransport ensures the example page in headless Chromium,
// on transport "auto", opens a WebTransport session (no fallback) trusted
// by its certificate's hash — Chromium needs no flag for it: the
// serverCertificateHashes option alone, with an ECDSA certificate valid
// at most 14 days, on loopback — and, through a load balancer in front of
// two edges: receives every message an MQTT client (Eclipse Paho)
// publishes on the other edge, exactly once and in order, although the
// edge holding its session is killed mid-way (it asks GET /webtransport
// again, lands on the other edge and resubscribes from its last
// position); then publishes over its session a message that an SSE
// client receives, acknowledged with its position.
func TestBrowserWebTransport(t *testing.T) {
	certFile, keyFile := webTransportCert(t)
	ctx, c := browserFailover(t, "auto", "HERALD_WEBTRANSPORT_ADDR=127.0.0.1:0",
		"HERALD_WEBTRANSPORT_CERT="+certFile, "HERALD_WEBTRANSPORT_KEY="+keyFile)
	if transport, fallbacks := pageTransport(t, ctx); transport != "webtransport" || len(fallbacks) != 0 {
		t.Fatalf("the page ran on %q after falling back from %q, want WebTransport throughout", transport, fallbacks)
	}

	// Its own publish, over the session, to an SSE client on the other edge.
	edges, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.herald.edges`))
	if err != nil {
		t.Fatal(err)
	}
	holder := c.byID(t, edges[len(edges)-1])
	topic := fmt.Sprintf("browser/wt/%d/up", time.Now().UnixNano())
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The other edge was killed: the SSE client is on the edge that holds
	// the page's session now.
	s, err := openSSE(sctx, holder.HTTP, "topic="+topic, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	pos, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		fmt.Sprintf(`herald.publish(%q, "from the browser over WebTransport")`, topic), chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("publish over WebTransport: %v", err)
	}
	select {
	case ev := <-s.events:
		if ev.ID != pos || !strings.Contains(ev.Data, `"payload":"from the browser over WebTransport"`) {
			t.Fatalf("the SSE client got %+v, want the page's message at %s", ev, pos)
		}
	case <-sctx.Done():
		t.Fatal("the SSE client never got the page's publish")
	}
	t.Logf("published over WebTransport at %s, received over SSE", pos)
}

// TestBrowserTransportAuto ensures the example page on transport "auto"
// in the embedded default (bin/herald, as make run starts it) opens a
// WebTransport session when the edge serves one, and falls back to the
// WebSocket protocol when it does not (GET /webtransport answers 404);
// either way it receives what an MQTT device publishes.
func TestBrowserTransportAuto(t *testing.T) {
	certFile, keyFile := webTransportCert(t)
	ctx := startBrowser(t)
	for _, tc := range []struct {
		name      string
		env       []string
		transport string
		fallbacks []string
	}{
		{"with WebTransport", []string{"HERALD_WEBTRANSPORT_ADDR=127.0.0.1:0", "HERALD_WEBTRANSPORT_CERT=" + certFile,
			"HERALD_WEBTRANSPORT_KEY=" + keyFile}, "webtransport", nil},
		{"without", nil, "ws", []string{"webtransport"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := runEmbedded(t, tc.env...)
			if err := chromedp.Do(ctx, chromedp.Navigate(h.HTTP+"/?transport=auto&topic=sensors/%23")); err != nil {
				t.Fatal(err)
			}
			waitPage(t, ctx, `window.herald.state === "open"`, 15*time.Second)
			if transport, fallbacks := pageTransport(t, ctx); transport != tc.transport || fmt.Sprint(fallbacks) != fmt.Sprint(tc.fallbacks) {
				t.Fatalf("the page runs on %q after leaving %q, want %s after %q", transport, fallbacks, tc.transport, tc.fallbacks)
			}
			_, mqttPort, _ := strings.Cut(h.MQTT, ":")
			device(t, mqttPort, "over "+tc.name)
			waitPage(t, ctx, fmt.Sprintf(`window.received.some(m => m.payload === %q)`, "over "+tc.name), 15*time.Second)
		})
	}
}
