// Package tenancy tests Herald's tenants end to end on the local cluster
// (deploy/local/cluster.sh on free loopback ports: NATS, Redis, etcd, edges
// A and B in authenticated mode, session, admin): tenants and API keys
// created through the admin REST API, enforced by the edges for MQTT (Paho
// v5), SSE and WebSocket clients, and changed live.
//
// The binaries must be built first (`make build servers`; $HERALD_BIN
// points elsewhere).
package tenancy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// edge is the public addresses of one edge.
type edge struct {
	MQTT string // host:port
	HTTP string // http://host:port
}

var cluster struct {
	A, B  edge
	Admin string // http://host:port
	Token string // the operator token
}

func binDir() string {
	if d := os.Getenv("HERALD_BIN"); d != "" {
		return d
	}
	return filepath.Join(repoRoot(), "bin")
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	for _, b := range []string{"nats-server", "etcd", "herald-edge", "herald-session", "herald-admin"} {
		if _, err := os.Stat(filepath.Join(binDir(), b)); err != nil {
			fmt.Fprintf(os.Stderr, "%s is missing: run `make build servers`\n", filepath.Join(binDir(), b))
			return 1
		}
	}
	dir, err := os.MkdirTemp("", "herald-tenancy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ports, err := freePorts(12)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	p := make([]string, len(ports))
	for i, n := range ports {
		p[i] = strconv.Itoa(n)
	}
	env := []string{"HERALD_CLUSTER_DIR=" + dir, "HERALD_BIN=" + binDir(),
		"NATS_PORT=" + p[0], "REDIS_PORT=" + p[1], "ETCD_PORT=" + p[2], "ETCD_PEER_PORT=" + p[3],
		"ADMIN_PORT=" + p[4], "SESSION_OPS_PORT=" + p[5],
		"EDGE_A_MQTT=" + p[6], "EDGE_A_HTTP=" + p[7], "EDGE_A_OPS=" + p[8],
		"EDGE_B_MQTT=" + p[9], "EDGE_B_HTTP=" + p[10], "EDGE_B_OPS=" + p[11]}
	script := filepath.Join(repoRoot(), "deploy", "local", "cluster.sh")
	clusterCmd := func(arg string) ([]byte, error) {
		cmd := exec.Command("bash", script, arg)
		cmd.Env = append(os.Environ(), env...)
		return cmd.CombinedOutput()
	}
	defer func() {
		if out, err := clusterCmd("down"); err != nil {
			fmt.Fprintf(os.Stderr, "cluster down: %v\n%s", err, out)
		}
	}()
	if out, err := clusterCmd("up"); err != nil {
		fmt.Fprintf(os.Stderr, "cluster up: %v\n%s", err, out)
		return 1
	}
	tok, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cluster.Token = strings.TrimSpace(string(tok))
	cluster.Admin = "http://127.0.0.1:" + p[4]
	cluster.A = edge{MQTT: "127.0.0.1:" + p[6], HTTP: "http://127.0.0.1:" + p[7]}
	cluster.B = edge{MQTT: "127.0.0.1:" + p[9], HTTP: "http://127.0.0.1:" + p[10]}
	code := m.Run()
	if code != 0 {
		dumpLogs(filepath.Join(dir, "logs"))
	}
	return code
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		if p := l.Addr().(*net.TCPAddr).Port; p > 10000 {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

func dumpLogs(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		lines := strings.Split(string(b), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(os.Stderr, "--- %s (tail)\n%s\n", e.Name(), strings.Join(lines, "\n"))
	}
}

// admin calls the admin REST API with the operator token and decodes the
// answer into out (if not nil); a status other than 200 fails the test.
func admin(t *testing.T, method, path string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, cluster.Admin+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cluster.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

type capability struct {
	Filter  string   `json:"filter"`
	Actions []string `json:"actions"`
}

func caps(filter string, actions ...string) capability {
	for i, a := range actions {
		actions[i] = "ACTION_" + strings.ToUpper(a)
	}
	return capability{Filter: filter, Actions: actions}
}

// createTenant creates a tenant with limits (JSON names of Limits).
func createTenant(t *testing.T, id string, limits map[string]any) {
	t.Helper()
	body := map[string]any{"id": id}
	if limits != nil {
		body["limits"] = limits
	}
	admin(t, "POST", "/v1/tenants", body, nil)
}

// apiKey is a created key: its id and its token.
type apiKey struct {
	ID, Token string
}

func createKey(t *testing.T, tenant string, cs ...capability) apiKey {
	t.Helper()
	var out struct {
		Key struct {
			ID string `json:"id"`
		} `json:"key"`
		Token string `json:"token"`
	}
	admin(t, "POST", "/v1/tenants/"+tenant+"/keys", map[string]any{"description": t.Name(), "capabilities": cs}, &out)
	if out.Token == "" || out.Key.ID == "" {
		t.Fatalf("key of %s: no token or id: %+v", tenant, out)
	}
	return apiKey{ID: out.Key.ID, Token: out.Token}
}

// settle gives the edges' Directories time to see a change made through
// the admin API (a watch: normally milliseconds).
func settle() { time.Sleep(300 * time.Millisecond) }
