// Package hostile attacks one embedded Herald (bin/herald) running with
// authentication on (no anonymous tenant, the admin API behind an operator
// token) and checks the outcome each attack must have: the protocol's
// refusal, the connection closed, and the server still serving others.
//
// The binaries must be built first (`make build`; $HERALD_BIN points
// elsewhere).
package hostile

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/tests/localcluster"
)

// operatorToken is the admin API's operator token of the herald under test.
const operatorToken = "hostile-operator-token"

// jwtSecret is the HS256 secret of acme's JWT key "k1".
var jwtSecret = []byte("hostile-jwt-secret-0123456789abcdef")

// herald is one running bin/herald.
type herald struct {
	MQTT, HTTP, Admin, Ops string // host:port, http://host:port for the HTTP ones
	cmd                    *exec.Cmd
	done                   chan struct{}
	log                    string
}

// the herald every test of this package attacks, and its tenants' keys.
var (
	srv     *herald
	acmeKey string // acme: publish and subscribe everywhere
	betaKey string // beta: publish and subscribe everywhere
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "herald-hostile-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if srv, err = startHerald(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.stop()
	if err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		srv.dump(os.Stderr)
		return 1
	}
	code := m.Run()
	if code != 0 {
		srv.dump(os.Stderr)
	}
	return code
}

// startHerald runs bin/herald in authenticated mode on free loopback
// ports, with data under dir; env adds to its environment.
func startHerald(dir string, env ...string) (*herald, error) {
	bin := filepath.Join(localcluster.BinDir(), "herald")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s is missing: run `make build`", bin)
	}
	p, err := localcluster.FreePorts(6)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(p[i]) }
	h := &herald{MQTT: addr(0), HTTP: "http://" + addr(1), Admin: "http://" + addr(2), Ops: "http://" + addr(4),
		done: make(chan struct{}), log: filepath.Join(dir, "herald.log")}
	logFile, err := os.Create(h.log)
	if err != nil {
		return nil, err
	}
	h.cmd = exec.Command(bin, "--data-dir", filepath.Join(dir, "data"))
	h.cmd.Env = append(os.Environ(),
		"HERALD_MQTT_ADDR="+addr(0), "HERALD_HTTP_ADDR="+addr(1), "HERALD_ADMIN_ADDR="+addr(2),
		"HERALD_OPS_ADDR="+addr(4),
		"HERALD_ANONYMOUS_TENANT=", "HERALD_ADMIN_TOKEN="+operatorToken)
	h.cmd.Env = append(h.cmd.Env, env...)
	h.cmd.Stdout, h.cmd.Stderr = logFile, logFile
	if err := h.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	go func() { _ = h.cmd.Wait(); logFile.Close(); close(h.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(h.Ops + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h, nil
			}
		}
		select {
		case <-h.done:
			return nil, fmt.Errorf("herald exited at start; log in %s", h.log)
		default:
		}
		if time.Now().After(deadline) {
			h.stop()
			return nil, fmt.Errorf("herald not ready after 60s (%v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop interrupts the herald and waits for it (killing it after 15 s).
func (h *herald) stop() {
	_ = h.cmd.Process.Signal(os.Interrupt)
	select {
	case <-h.done:
	case <-time.After(15 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
}

// alive reports whether the process still runs and answers /healthz.
func (h *herald) alive() error {
	select {
	case <-h.done:
		return fmt.Errorf("herald exited")
	default:
	}
	resp, err := http.Get(h.HTTP + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	return nil
}

func (h *herald) dump(w io.Writer) {
	b, _ := os.ReadFile(h.log)
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	fmt.Fprintf(w, "--- herald log (tail)\n%s\n", b)
}

// setup creates the tenants and credentials the attacks use.
func setup() error {
	limits := map[string]any{"maxSubscriptionsPerConnection": "1000"}
	if err := admin(http.MethodPost, "/v1/tenants", map[string]any{"id": "acme", "limits": limits}, nil); err != nil {
		return err
	}
	if err := admin(http.MethodPost, "/v1/tenants", map[string]any{"id": "beta"}, nil); err != nil {
		return err
	}
	all := []map[string]any{{"filter": "#", "actions": []string{"ACTION_PUBLISH", "ACTION_SUBSCRIBE", "ACTION_HISTORY"}}}
	for tenant, key := range map[string]*string{"acme": &acmeKey, "beta": &betaKey} {
		var out struct {
			Token string `json:"token"`
		}
		if err := admin(http.MethodPost, "/v1/tenants/"+tenant+"/keys", map[string]any{"description": "hostile", "capabilities": all}, &out); err != nil {
			return err
		}
		*key = out.Token
	}
	if err := admin(http.MethodPost, "/v1/tenants/acme/jwt-keys", map[string]any{"id": "k1", "algorithm": "HS256",
		"hmacSecret": base64.StdEncoding.EncodeToString(jwtSecret), "capabilitiesClaim": "caps"}, nil); err != nil {
		return err
	}
	// The edge's Directory follows etcd by a watch: wait until both keys
	// authenticate.
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, errA := connectV5(srv.MQTT, "setup-a", "", acmeKey, nil)
		b, errB := connectV5(srv.MQTT, "setup-b", "", betaKey, nil)
		if errA == nil && errB == nil && a.code == 0 && b.code == 0 {
			a.Close()
			b.Close()
			return nil
		}
		for _, c := range []*mqttConn{a, b} {
			if c != nil {
				c.Close()
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("keys not usable after 10s: %v %v", errA, errB)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// admin calls the admin REST API of srv with the operator token; a status
// other than 200 is an error.
func admin(method, path string, body, out any) error {
	status, b, err := adminCall(srv.Admin, method, path, operatorToken, body)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func adminCall(base, method, path, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// signJWT returns an HS256 token of acme's key k1 with claims.
func signJWT(claims map[string]any) string {
	b64 := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]any{"alg": "HS256", "typ": "JWT", "kid": "k1"})
	c, _ := json.Marshal(claims)
	s := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	mac := hmac.New(sha256.New, jwtSecret)
	mac.Write([]byte(s))
	return s + "." + b64.EncodeToString(mac.Sum(nil))
}

// closedWithin reports whether the server closes c within d (reading and
// discarding whatever it sends first).
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

// httpGet sends a GET with an optional bearer token and returns the status,
// headers and up to 64 KiB of body; a stream (SSE) is cut after that.
func httpGet(ctx context.Context, client *http.Client, url, token string) (int, http.Header, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(&b, io.LimitReader(resp.Body, 64<<10))
	}
	return resp.StatusCode, resp.Header, b.String(), nil
}

// adminRoute is one REST route of the admin API.
type adminRoute struct{ method, path string }

// openAPIRoutes lists the REST routes of proto/openapi/admin.swagger.json.
func openAPIRoutes(tb testing.TB) []adminRoute {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(localcluster.RepoRoot(), "proto", "openapi", "admin.swagger.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		tb.Fatal(err)
	}
	var routes []adminRoute
	for p, methods := range doc.Paths {
		for m := range methods {
			routes = append(routes, adminRoute{strings.ToUpper(m), p})
		}
	}
	if len(routes) < 10 {
		tb.Fatalf("only %d routes in the OpenAPI document", len(routes))
	}
	return routes
}

// fillPath replaces every {parameter} of an OpenAPI path with v.
func fillPath(p, v string) string {
	var b strings.Builder
	for {
		i, j := strings.IndexByte(p, '{'), strings.IndexByte(p, '}')
		if i < 0 || j < i {
			b.WriteString(p)
			return b.String()
		}
		b.WriteString(p[:i] + v)
		p = p[j+1:]
	}
}

// capability is a capability of the admin API: a filter and its actions
// (publish, subscribe, history).
type capability struct {
	Filter  string   `json:"filter"`
	Actions []string `json:"actions"`
}

func grant(filter string, actions ...string) capability {
	c := capability{Filter: filter}
	for _, a := range actions {
		c.Actions = append(c.Actions, "ACTION_"+strings.ToUpper(a))
	}
	return c
}

// createKey creates an API key of tenant with the capabilities and waits
// until the edge admits it; it returns the key's id and token.
func createKey(t *testing.T, tenant string, caps ...capability) (id, token string) {
	t.Helper()
	var out struct {
		Key struct {
			ID string `json:"id"`
		} `json:"key"`
		Token string `json:"token"`
	}
	if err := admin(http.MethodPost, "/v1/tenants/"+tenant+"/keys", map[string]any{"description": t.Name(), "capabilities": caps}, &out); err != nil {
		t.Fatal(err)
	}
	waitAdmitted(t, out.Token)
	return out.Key.ID, out.Token
}

// waitAdmitted waits until the edge's Directory, which follows etcd by a
// watch, admits token.
func waitAdmitted(t *testing.T, token string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := connectV5(srv.MQTT, "", "", token, nil)
		if err == nil {
			c.Close()
			if c.code == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("key not admitted after 10s: %v (CONNACK %v)", err, c)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
