// Package browser tests Herald's browser transports end to end: the local
// cluster (deploy/local/cluster.sh) on free ports, a local HAProxy in front
// of its two edges, headless Chromium (Debian's chromium, driven over the
// DevTools protocol by chromedp) loading the edge's example page, and Go
// clients for the load, replay-window and slow-consumer cases.
//
// The binaries must be built first (`make build servers`); chromium and
// haproxy come from tools/install-test-deps.sh (`make test` does both).
package browser

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func repoRoot(tb testing.TB) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// need fails the test when a program the test runs is missing.
func need(tb testing.TB, name string) string {
	tb.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// Debian puts daemons such as haproxy in /usr/sbin, off a user's PATH.
	if p := filepath.Join("/usr/sbin", name); exec.Command(p, "-v").Run() == nil {
		return p
	}
	tb.Fatalf("%s is missing: run `make test-deps` (make test does)", name)
	return ""
}

// freePorts returns n distinct free loopback ports above 10000 (Chromium
// refuses some lower ones).
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ports []int
	var ls []net.Listener
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		if p := l.Addr().(*net.TCPAddr).Port; p > 10000 {
			ports = append(ports, p)
		}
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// edge is one edge of the cluster.
type edge struct {
	ID   string // its --id, as in the X-Herald-Edge header
	Name string // its name in the cluster's pid and log files
	HTTP string // http://host:port
	MQTT string // host:port
}

// cluster is a running local cluster.
type cluster struct {
	dir     string
	A, B    edge
	NATSURL string
}

// startCluster runs deploy/local/cluster.sh up on free ports in a temp dir,
// with env added to the environment of every process (HERALD_* settings).
func startCluster(t *testing.T, env ...string) *cluster {
	t.Helper()
	for _, b := range []string{"nats-server", "etcd", "herald-edge", "herald-session", "herald-admin"} {
		if _, err := os.Stat(filepath.Join(repoRoot(t), "bin", b)); err != nil {
			t.Fatalf("bin/%s is missing: run `make build servers` (make test does)", b)
		}
	}
	p := make([]string, 12)
	for i, n := range freePorts(t, 12) {
		p[i] = strconv.Itoa(n)
	}
	dir := t.TempDir()
	vars := []string{
		"HERALD_CLUSTER_DIR=" + dir, "HERALD_BIN=" + filepath.Join(repoRoot(t), "bin"),
		"NATS_PORT=" + p[0], "REDIS_PORT=" + p[1], "ETCD_PORT=" + p[2], "ETCD_PEER_PORT=" + p[3],
		"ADMIN_PORT=" + p[4], "SESSION_OPS_PORT=" + p[5],
		"EDGE_A_MQTT=" + p[6], "EDGE_A_HTTP=" + p[7], "EDGE_A_OPS=" + p[8],
		"EDGE_B_MQTT=" + p[9], "EDGE_B_HTTP=" + p[10], "EDGE_B_OPS=" + p[11],
	}
	script := filepath.Join(repoRoot(t), "deploy", "local", "cluster.sh")
	run := func(arg string) ([]byte, error) {
		cmd := exec.Command("bash", script, arg)
		cmd.Env = append(append(os.Environ(), vars...), env...)
		return cmd.CombinedOutput()
	}
	t.Cleanup(func() {
		if out, err := run("down"); err != nil {
			t.Logf("cluster down: %v\n%s", err, out)
		}
		if t.Failed() {
			dumpLogs(t, filepath.Join(dir, "logs"))
		}
	})
	if out, err := run("up"); err != nil {
		t.Fatalf("cluster up: %v\n%s", err, out)
	}
	h := "127.0.0.1:"
	return &cluster{dir: dir, NATSURL: "nats://" + h + p[0],
		A: edge{ID: "edge-a", Name: "edge-a", HTTP: "http://" + h + p[7], MQTT: h + p[6]},
		B: edge{ID: "edge-b", Name: "edge-b", HTTP: "http://" + h + p[10], MQTT: h + p[9]},
	}
}

// byID returns the edge with id.
func (c *cluster) byID(t *testing.T, id string) edge {
	t.Helper()
	switch id {
	case c.A.ID:
		return c.A
	case c.B.ID:
		return c.B
	}
	t.Fatalf("no edge %q", id)
	return edge{}
}

// other returns the edge that is not e.
func (c *cluster) other(e edge) edge {
	if e.ID == c.A.ID {
		return c.B
	}
	return c.A
}

// pid returns the PID of a cluster process from the cluster's pid dir.
func (c *cluster) pid(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, "pids", name+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// kill sends SIGKILL to edge e, by the PID the cluster script recorded.
func (c *cluster) kill(t *testing.T, e edge) {
	t.Helper()
	if err := syscall.Kill(c.pid(t, e.Name), syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", e.Name, err)
	}
	t.Logf("killed %s (SIGKILL)", e.Name)
}

// log returns an edge's log so far.
func (c *cluster) log(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, "logs", name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func dumpLogs(t *testing.T, dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		lines := strings.Split(string(b), "\n")
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		t.Logf("--- %s (tail)\n%s", e.Name(), strings.Join(lines, "\n"))
	}
}

// startHAProxy runs HAProxy on a free loopback port, balancing HTTP (and
// WebSocket upgrades) round-robin over the edges, with fast health checks
// and redispatch so that a killed edge's share goes to the other. It
// returns the balancer's base URL.
func startHAProxy(t *testing.T, edges ...edge) string {
	t.Helper()
	bin := need(t, "haproxy")
	port := freePorts(t, 1)[0]
	var servers strings.Builder
	for _, e := range edges {
		fmt.Fprintf(&servers, "  server %s %s check inter 200ms fall 1 rise 2\n", e.ID, strings.TrimPrefix(e.HTTP, "http://"))
	}
	cfg := fmt.Sprintf(`global
  maxconn 512
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  timeout tunnel 60s
  timeout http-request 10s
  retries 3
  option redispatch 1
frontend herald
  bind 127.0.0.1:%d
  default_backend edges
backend edges
  balance roundrobin
  option httpchk GET /healthz
%s`, port, servers.String())
	dir := t.TempDir()
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("--- haproxy\n%s", b)
		}
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	// Ready once it answers with an edge behind it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Herald-Edge") != "" {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy not forwarding after 10s (last error %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// publishBatch publishes messages over HTTP (POST /publish, batch) and
// returns their positions.
func publishBatch(t *testing.T, base string, msgs []map[string]any) []string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"messages": msgs})
	resp, err := http.Post(base+"/publish", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Position string `json:"position"`
			Error    *struct {
				Code, Message string
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || len(out.Results) != len(msgs) {
		t.Fatalf("batch publish: %d %v", resp.StatusCode, err)
	}
	pos := make([]string, len(msgs))
	for i, r := range out.Results {
		if r.Error != nil {
			t.Fatalf("batch publish %d: %+v", i, *r.Error)
		}
		pos[i] = r.Position
	}
	return pos
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	ID, Event, Data string
}

// sseStream is an open event stream, parsed per the WHATWG rules (fields
// id, event, data; comments and retry ignored).
type sseStream struct {
	resp   *http.Response
	cancel context.CancelFunc
	events chan sseEvent
	edge   string
}

// openSSE opens GET /sse?query on base with Last-Event-ID lastID (none if
// empty) and returns once the edge answered (its interest is then in effect).
func openSSE(ctx context.Context, base, query, lastID string) (*sseStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?"+query, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET /sse?%s: %s", query, resp.Status)
	}
	s := &sseStream{resp: resp, cancel: cancel, events: make(chan sseEvent, 1024), edge: resp.Header.Get("X-Herald-Edge")}
	go func() {
		defer close(s.events)
		r := bufio.NewReader(resp.Body)
		var ev sseEvent
		var data []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			switch {
			case line == "":
				if len(data) > 0 {
					ev.Data = strings.Join(data, "\n")
					select {
					case s.events <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev, data = sseEvent{}, nil
			case strings.HasPrefix(line, ":"):
			default:
				field, value, _ := strings.Cut(line, ":")
				value = strings.TrimPrefix(value, " ")
				switch field {
				case "id":
					ev.ID = value
				case "event":
					ev.Event = value
				case "data":
					data = append(data, value)
				}
			}
		}
	}()
	return s, nil
}

func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
	for range s.events {
	}
}

// rss returns the resident set size of a process, in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}
