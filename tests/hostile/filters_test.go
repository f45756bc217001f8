package hostile

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// TestSharedFiltersOnStreams ensures SSE, long-poll and the WebSocket
// protocol refuse "$share/…" and "$queue/…" filters (400 invalid_topic,
// WebSocket error frame invalid_topic) instead of subscribing them
// literally: a key limited to a/# could otherwise read the topic
// "$share/g/a/x", which its capabilities do not cover.
func TestSharedFiltersOnStreams(t *testing.T) {
	_, token := createKey(t, "acme", grant("a/#", "publish", "subscribe", "history"))
	for _, filter := range []string{"$share/g/a/x", "$share/g/a/#", "$queue/a/x"} {
		t.Run("SSE "+filter, func(t *testing.T) {
			wantJSONError(t, "/sse?topic="+url.QueryEscape(filter), token, http.StatusBadRequest, "invalid_topic")
		})
		t.Run("poll "+filter, func(t *testing.T) {
			wantJSONError(t, "/poll?timeout=0&cursor=x-0&topic="+url.QueryEscape(filter), token, http.StatusBadRequest, "invalid_topic")
		})
		t.Run("WebSocket "+filter, func(t *testing.T) {
			c := dialWSToken(t, token)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := wsjson.Write(ctx, c, map[string]any{"op": "subscribe", "id": "s", "topic": filter}); err != nil {
				t.Fatal(err)
			}
			var f struct{ Type, ID, Code string }
			if err := wsjson.Read(ctx, c, &f); err != nil || f.Type != "error" || f.ID != "s" || f.Code != "invalid_topic" {
				t.Fatalf("frame %+v, %v; want error invalid_topic", f, err)
			}
		})
	}
	// The same key's plain filter is served (control).
	t.Run("SSE a/x (control)", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if status, _, body, err := httpGet(ctx, http.DefaultClient, srv.HTTP+"/sse?topic=a/x", token); status != http.StatusOK {
			t.Fatalf("%d %s %v", status, body, err)
		}
	})
}

// wantJSONError sends a GET with the bearer token and checks the status
// and the JSON error code of the answer.
func wantJSONError(t *testing.T, path, token string, status int, code string) http.Header {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.HTTP+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal(b, &body); err != nil || resp.StatusCode != status || body.Error.Code != code {
		t.Fatalf("GET %s: %d %s, want %d with code %q", path, resp.StatusCode, b, status, code)
	}
	return resp.Header
}

// dialWSToken opens a native WebSocket with token.
func dialWSToken(t *testing.T, token string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.HTTP, "http")+"/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		t.Fatalf("dial /ws: %v (%v)", err, resp)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}
