// Package web serves the edge's example page in development mode: a live
// topic viewer over EventSource (or the native protocol over WebSocket
// with ?transport=ws, over WebTransport with ?transport=webtransport,
// long-polling with ?transport=poll, or the first of those that works with
// ?transport=auto: WebTransport, WebSocket, SSE, long-poll) with a publish
// box over POST /publish. It is plain HTML and
// JavaScript embedded in the binary, loading nothing from elsewhere, so it
// works offline; the browser tests drive it too.
//
// # Page parameters
//
//	GET /?topic=<filter>[&transport=sse|ws|webtransport|poll|auto][&binary=1][&retained=true | &rewind=<n>|<duration>]
//
// With topic the page subscribes at once. retained and rewind choose the
// subscription's start (the page's Start control): the retained message
// of each matching topic first, or the last n messages, or those of the
// last duration, then live ones; a retained message has no position (its
// row says "retained", its id is ”). The page exposes what it
// received to scripts (and tests):
//
//	window.received  [{id, topic, payload, encoding, seq, retain}]  every message, in arrival order
//	window.gaps      [{from, epoch_changed}]                every gap announced
//	window.herald    {transport, state, opens, errors, closes, lastId, edges, fallbacks}
//	herald.publish(topic, payload)  a publish over the WebSocket or WebTransport
//	                                connection: a promise of the stored position
//
// edges are the X-Herald-Edge of each GET /webtransport (the edge a
// WebTransport session went to); fallbacks the transports "auto" left
// because they failed before subscribing.
//
// state is "connecting", "open" (subscribed: the SSE response arrived, or the
// WebSocket subscribe was acknowledged), "reconnecting" or "closed". On SSE
// the browser's EventSource reconnects by itself with Last-Event-ID; when
// it gives up (an answer that is not an event stream, such as a load
// balancer's 503) the page opens a new one with ?lastEventId=. On WebSocket
// the page reconnects with backoff and resubscribes with from = the
// position of the last message it received; on WebTransport too, asking
// GET /webtransport again for the URL (another edge's, behind a balancer).
package web

import (
	"embed"
	"net"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the example page at / and its script at /demo/app.js.
type Handler struct {
	mux *http.ServeMux
}

// NewHandler returns the example page's handler.
func NewHandler() *Handler {
	h := &Handler{mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, "static/index.html", "text/html; charset=utf-8")
	})
	h.mux.HandleFunc("GET /demo/app.js", func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, "static/app.js", "text/javascript; charset=utf-8")
	})
	return h
}

// Routes are the patterns the handler serves, for the edge's mux.
var Routes = []string{"GET /{$}", "GET /demo/app.js"}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func serve(w http.ResponseWriter, r *http.Request, name, contentType string) {
	b, err := static.ReadFile(name)
	if err != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", contentType)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Content-Type-Options", "nosniff")
	// Everything the page loads or connects to is the edge itself: its
	// own origin, and its WebTransport listener, on the same host at
	// another port (HTTPS: HTTP/3).
	connect := "'self'"
	if host := hostOf(r.Host); host != "" {
		connect += " https://" + host + ":*"
	}
	hdr.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; connect-src "+connect)
	_, _ = w.Write(b)
}

// hostOf returns the host name of a Host header for a CSP source: a DNS
// name or an IPv4 address (IPv6: left out, the page then reaches only its
// own origin), "" when it is anything else — a header value must not
// smuggle another directive into the policy.
func hostOf(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "" || len(host) > 253 {
		return ""
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return ""
		}
	}
	return host
}

var _ http.Handler = (*Handler)(nil)
