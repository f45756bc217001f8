package hostile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCredentialsHostile ensures forged, expired, malformed and
// wrong-tenant credentials are refused on MQTT (CONNACK 0x86 or 0x87) and
// HTTP (401 or 403 on /sse), while a valid JWT of the same key is admitted
// (so the refusals are about the credential). Each row connects from its
// own loopback address: failures are rate-limited per source.
func TestCredentialsHostile(t *testing.T) {
	now := time.Now()
	valid := map[string]any{"tenant": "acme", "sub": "d1", "exp": now.Add(time.Hour).Unix(), "caps": []string{"subscribe:#", "publish:#"}}
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for k, v := range valid {
			c[k] = v
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	acmeID, _, _ := strings.Cut(strings.TrimPrefix(acmeKey, "hk_"), "_")
	_, betaSecret, _ := strings.Cut(strings.TrimPrefix(betaKey, "hk_"), "_")
	rows := []struct {
		name     string
		token    string
		admit    bool
		codes    []byte // MQTT 5 CONNACK
		statuses []int  // GET /sse
	}{
		{"valid JWT (control)", signJWT(valid), true, []byte{0}, []int{200}},
		{"expired JWT", signJWT(with("exp", now.Add(-time.Hour).Unix())), false, []byte{0x86, 0x87}, []int{401, 403}},
		{"JWT without exp", signJWT(with("exp", nil)), false, []byte{0x86, 0x87}, []int{401, 403}},
		{"JWT not yet valid", signJWT(with("nbf", now.Add(time.Hour).Unix())), false, []byte{0x86, 0x87}, []int{401, 403}},
		{"JWT with a forged signature", signJWT(valid)[:len(signJWT(valid))-4] + "AAAA", false, []byte{0x86}, []int{401}},
		{"JWT with alg none", unsignedJWT(valid), false, []byte{0x86}, []int{401}},
		{"JWT of acme's key claiming tenant beta", signJWT(with("tenant", "beta")), false, []byte{0x86, 0x87}, []int{401, 403}},
		{"API key id of acme with beta's secret", "hk_" + acmeID + "_" + betaSecret, false, []byte{0x86}, []int{401}},
		{"API key with an unknown id", "hk_nosuchkey_" + betaSecret, false, []byte{0x86}, []int{401}},
		{"garbage token", "garbage.token.x", false, []byte{0x86}, []int{401}},
		{"JWT with a malformed capability claim", signJWT(with("caps", []string{"publish:a/#/b"})), false, []byte{0x86}, []int{401}},
		{"JWT with a capability of an unknown action", signJWT(with("caps", []string{"delete:a/#"})), false, []byte{0x86}, []int{401}},
		{"no credentials", "", false, []byte{0x86, 0x87}, []int{401, 403}},
	}
	for i, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			src := fmt.Sprintf("127.0.1.%d", i+1)
			c, err := connectV5From(srv.MQTT, src, "cred", "", row.token, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if !slices.Contains(row.codes, c.code) {
				t.Fatalf("MQTT CONNACK %#x, want one of % x", c.code, row.codes)
			}
			if !row.admit {
				mustClose(t, c)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			status, hdr, body, err := httpGet(ctx, clientFrom(t, src), srv.HTTP+"/sse?topic=a", row.token)
			if err != nil && !row.admit {
				t.Fatal(err)
			}
			if !slices.Contains(row.statuses, status) {
				t.Fatalf("GET /sse: %d %s, want one of %v", status, body, row.statuses)
			}
			if status == http.StatusUnauthorized && hdr.Get("WWW-Authenticate") != wwwAuthenticate {
				t.Fatalf("401 with WWW-Authenticate %q, want %q", hdr.Get("WWW-Authenticate"), wwwAuthenticate)
			}
			t.Logf("CONNACK %#x, GET /sse %d", c.code, status)
		})
	}
}

// wwwAuthenticate is the challenge docs/protocols.md documents for every
// 401 of the edge.
const wwwAuthenticate = `Bearer realm="herald", error="invalid_token"`

// TestUnauthorizedAnswers ensures every HTTP endpoint of the edge answers
// a refused credential with 401, the JSON code not_authenticated and the
// documented WWW-Authenticate challenge (the WebSocket endpoints before
// the upgrade). Each request comes from its own address: failures are
// limited per source.
func TestUnauthorizedAnswers(t *testing.T) {
	acmeID, _, _ := strings.Cut(strings.TrimPrefix(acmeKey, "hk_"), "_")
	wrong := "hk_" + acmeID + "_" + strings.Repeat("A", 43)
	for i, r := range []struct{ method, path, contentType string }{
		{"GET", "/sse?topic=a", ""},
		{"GET", "/poll?topic=a&timeout=0", ""},
		{"POST", "/publish?topic=a", "application/octet-stream"},
		{"POST", "/publish", "application/json"},
		{"GET", "/ws", ""},
	} {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			req, err := http.NewRequest(r.method, srv.HTTP+r.path, strings.NewReader(`{"messages":[]}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+wrong)
			if r.contentType != "" {
				req.Header.Set("Content-Type", r.contentType)
			}
			if r.path == "/ws" {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
				req.Header.Set("Sec-WebSocket-Version", "13")
				req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			}
			resp, err := clientFrom(t, fmt.Sprintf("127.0.4.%d", i+1)).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error struct{ Code string } `json:"error"`
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal(b, &body) != nil || body.Error.Code != "not_authenticated" {
				t.Fatalf("%d %s, want 401 not_authenticated", resp.StatusCode, b)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != wwwAuthenticate {
				t.Fatalf("WWW-Authenticate %q, want %q", got, wwwAuthenticate)
			}
		})
	}
}

// TestRevokedLongPoll ensures a long-poll waiting for messages is answered
// 401 (not_authenticated, with the challenge) as soon as its key is
// revoked, not 200 with nothing at the end of its wait.
func TestRevokedLongPoll(t *testing.T) {
	id, token := createKey(t, "acme", grant("revoke/#", "subscribe", "history"))
	// The poll's cursor: the stream's current end.
	var first struct{ Cursor string }
	if status := getJSON(t, "/poll?topic=revoke/x&timeout=0", token, &first); status != http.StatusOK || first.Cursor == "" {
		t.Fatalf("first poll: %d %+v", status, first)
	}
	type answer struct {
		status int
		hdr    http.Header
		body   string
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, srv.HTTP+"/poll?topic=revoke/x&timeout=30&cursor="+first.Cursor, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- answer{resp.StatusCode, resp.Header, string(b), nil}
	}()
	// Revoked once the poll waits: it is listed among the tenant's
	// connections.
	waitConnections(t, "acme", "poll", 1)
	start := time.Now()
	if err := admin(http.MethodDelete, "/v1/tenants/acme/keys/"+id, nil, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-done:
		if a.err != nil || a.status != http.StatusUnauthorized || !strings.Contains(a.body, `"not_authenticated"`) ||
			a.hdr.Get("WWW-Authenticate") != wwwAuthenticate {
			t.Fatalf("revoked poll: %d %s %v (WWW-Authenticate %q), want 401 not_authenticated", a.status, a.body, a.err,
				a.hdr.Get("WWW-Authenticate"))
		}
		t.Logf("revoked poll answered 401 after %v", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("revoked poll not answered within 10s")
	}
}

// getJSON sends a GET with the bearer token and decodes a JSON answer.
func getJSON(t *testing.T, path, token string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.HTTP+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// waitConnections waits until the admin API lists at least n connections
// of the protocol in the tenant.
func waitConnections(t *testing.T, tenant, protocol string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		var list struct {
			Connections []struct{ Protocol string } `json:"connections"`
		}
		if err := admin(http.MethodGet, "/v1/tenants/"+tenant+"/connections", nil, &list); err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, c := range list.Connections {
			if c.Protocol == protocol {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s connections of %s listed after 10s, want %d", got, protocol, tenant, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBruteForceLimited ensures guessing an API key's secret is limited:
// after the failure burst (tenantauth.DefaultFailureBurst, 10) from one
// address, further attempts get CONNACK 0x9F (MQTT 5), return code 3
// (3.1.1) or HTTP 429 with Retry-After — even with the right secret, and
// before any hashing — while other addresses are unaffected.
func TestBruteForceLimited(t *testing.T) {
	const burst = 10
	// Two victim keys, one guessed over MQTT and one over HTTP: each key
	// id has its own failure bucket too.
	newKey := func() string {
		var out struct {
			Token string `json:"token"`
		}
		all := []map[string]any{{"filter": "#", "actions": []string{"ACTION_PUBLISH", "ACTION_SUBSCRIBE"}}}
		if err := admin(http.MethodPost, "/v1/tenants/acme/keys", map[string]any{"description": "victim", "capabilities": all}, &out); err != nil {
			t.Fatal(err)
		}
		return out.Token
	}
	victim, httpVictim := newKey(), newKey()
	guess := func(key string, n int) string {
		return key[:strings.LastIndexByte(key, '_')+1] + fmt.Sprintf("guess%08d", n)
	}
	wrong := func(n int) string { return guess(victim, n) }

	const mqttSrc, httpSrc, otherSrc = "127.0.2.1", "127.0.2.2", "127.0.2.3"
	// Simultaneous guesses: each takes its token before it is checked.
	const attempts = 3 * burst
	start := time.Now()
	codes := make([]byte, attempts)
	var wg sync.WaitGroup
	for n := range attempts {
		wg.Go(func() {
			c, err := connectV5From(srv.MQTT, mqttSrc, fmt.Sprint("bf", n), "", wrong(n), nil)
			if err != nil {
				t.Errorf("attempt %d: %v", n, err)
				return
			}
			codes[n] = c.code
			c.Close()
		})
	}
	wg.Wait()
	// At most the burst, plus one token per second of the run, is checked.
	refills := int(time.Since(start)/time.Second) + 1
	checked, limited := bytes.Count(codes, []byte{0x86}), bytes.Count(codes, []byte{0x9F})
	if checked+limited != attempts || checked < burst || checked > burst+refills || limited == 0 {
		t.Fatalf("CONNACK codes % x: %d checked (0x86), %d limited (0x9F); want %d..%d checked, the rest limited",
			codes, checked, limited, burst, burst+refills)
	}
	// The right secret from the limited address: refused unchecked.
	c, err := connectV5From(srv.MQTT, mqttSrc, "bf", "", victim, nil)
	if err != nil || c.code != 0x9F {
		t.Fatalf("right secret from the limited address: %v, %v; want 0x9F", c, err)
	}
	c.Close()
	v3, err := connectV3(srv.MQTT, mqttSrc, "bf3", wrong(99))
	if err != nil || v3.code != 0x03 {
		t.Fatalf("3.1.1 from the limited address: %v, %v; want return code 3", v3, err)
	}
	v3.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var statuses []int
	var retry string
	client := clientFrom(t, httpSrc)
	for n := range burst + 2 {
		status, h, _, err := httpGet(ctx, client, srv.HTTP+"/poll?topic=a&timeout=0", guess(httpVictim, n))
		if err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, status)
		retry = h.Get("Retry-After")
	}
	if statuses[0] != 401 || statuses[len(statuses)-1] != 429 || retry == "" {
		t.Fatalf("HTTP statuses %v (last Retry-After %q): want 401 first, 429 with Retry-After last", statuses, retry)
	}
	// The key itself is now out of failure tokens too (its id is
	// counted): another address with the right secret is refused until
	// it refills (1 per second), then admitted.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := connectV5From(srv.MQTT, otherSrc, "bf-ok", "", victim, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if c.code == 0 {
			break
		}
		if c.code != 0x9F || time.Now().After(deadline) {
			t.Fatalf("right secret from another address: CONNACK %#x", c.code)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestAdminWithoutCredentials ensures every route of the admin API's
// OpenAPI document answers 401 without a credential and with a wrong one.
func TestAdminWithoutCredentials(t *testing.T) {
	routes := openAPIRoutes(t)
	for _, r := range routes {
		path := fillPath(r.path, "acme")
		for _, token := range []string{"", "not-the-operator-token", acmeKey} {
			status, body, err := adminCall(srv.Admin, r.method, path, token, map[string]any{})
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusUnauthorized {
				t.Errorf("%s %s with token %.12q: %d %s, want 401", r.method, path, token, status, body)
			}
		}
	}
}

// unsignedJWT is a token with alg "none".
func unsignedJWT(claims map[string]any) string {
	s := signJWT(claims)
	parts := strings.Split(s, ".")
	return "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
}

// clientFrom is an HTTP client whose connections come from the loopback
// address src.
func clientFrom(t *testing.T, src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}
