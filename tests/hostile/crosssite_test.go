package hostile

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestCrossSiteWrites ensures a page of another origin cannot write with a
// visitor's herald_token cookie: POST /publish (single or batch) with the
// cookie and a foreign Origin is 403 with a JSON body, as a WebSocket
// upgrade (/ws, /mqtt) from a foreign origin is; with the cookie, the form
// content types (and none) are refused whatever the origin. The same
// requests with the token in the Authorization header, which no page can
// add to another's requests, are served.
func TestCrossSiteWrites(t *testing.T) {
	const evil = "https://evil.example"
	own := srv.HTTP
	upgrade := func(r *http.Request) {
		r.Header.Set("Connection", "Upgrade")
		r.Header.Set("Upgrade", "websocket")
		r.Header.Set("Sec-WebSocket-Version", "13")
		r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		r.Header.Set("Sec-WebSocket-Protocol", "mqtt")
	}
	rows := []struct {
		name, method, path, origin, contentType, body string
		cookie                                        bool
		prep                                          func(*http.Request)
		status                                        int
	}{
		{"publish, cookie, foreign Origin", "POST", "/publish?topic=csrf/a", evil, "application/octet-stream", "x", true, nil, 403},
		{"batch, cookie, foreign Origin", "POST", "/publish", evil, "application/json", `{"messages":[{"topic":"csrf/a","payload":"x"}]}`, true, nil, 403},
		{"publish, cookie, own origin, text/plain", "POST", "/publish?topic=csrf/a", own, "text/plain", "x", true, nil, 403},
		{"publish, cookie, no Origin, text/plain", "POST", "/publish?topic=csrf/a", "", "text/plain;charset=UTF-8", "x", true, nil, 403},
		{"publish, cookie, no Origin, form-urlencoded", "POST", "/publish?topic=csrf/a", "", "application/x-www-form-urlencoded", "a=b", true, nil, 403},
		{"publish, cookie, no Origin, multipart", "POST", "/publish?topic=csrf/a", "", "multipart/form-data; boundary=b", "--b--", true, nil, 403},
		{"publish, cookie, no Origin, no Content-Type", "POST", "/publish?topic=csrf/a", "", "", "x", true, nil, 403},
		{"WebSocket /ws, foreign Origin", "GET", "/ws", evil, "", "", true, upgrade, 403},
		{"WebSocket /mqtt, foreign Origin", "GET", "/mqtt", evil, "", "", false, upgrade, 403},
		{"publish, cookie, own origin, octet-stream (control)", "POST", "/publish?topic=csrf/a", own, "application/octet-stream", "x", true, nil, 200},
		{"batch, cookie, own origin (control)", "POST", "/publish", own, "application/json", `{"messages":[{"topic":"csrf/a","payload":"x"}]}`, true, nil, 200},
		{"publish, bearer, foreign Origin, text/plain (control)", "POST", "/publish?topic=csrf/a", evil, "text/plain", "x", false, nil, 200},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			req, err := http.NewRequest(row.method, srv.HTTP+row.path, strings.NewReader(row.body))
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case row.cookie:
				req.AddCookie(&http.Cookie{Name: "herald_token", Value: acmeKey})
			case row.path != "/mqtt":
				req.Header.Set("Authorization", "Bearer "+acmeKey)
			}
			if row.origin != "" {
				req.Header.Set("Origin", row.origin)
			}
			if row.contentType != "" {
				req.Header.Set("Content-Type", row.contentType)
			}
			if row.prep != nil {
				row.prep(req)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			if resp.StatusCode != row.status {
				t.Fatalf("%d %s, want %d", resp.StatusCode, b, row.status)
			}
			if row.status == 403 {
				var body struct {
					Error struct{ Code string } `json:"error"`
				}
				if err := json.Unmarshal(b, &body); err != nil || body.Error.Code != "not_authorized" ||
					!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
					t.Fatalf("403 body %q (%s), want JSON not_authorized", b, resp.Header.Get("Content-Type"))
				}
			}
		})
	}
}
