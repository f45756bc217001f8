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
	"github.com/heraldmq/herald/tests/localcluster"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

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
	ports, err := localcluster.FreePorts(n)
	if err != nil {
		tb.Fatal(err)
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
	lc      *localcluster.Cluster
	dir     string
	A, B    edge
	NATSURL string
}

// startCluster runs the local cluster on free ports in a temp dir, with env
// added to the environment of every process (HERALD_* settings).
func startCluster(t *testing.T, env ...string) *cluster {
	t.Helper()
	lc, err := localcluster.Start(t.TempDir(), env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lc.Stop(); err != nil {
			t.Log(err)
		}
		if t.Failed() {
			var b strings.Builder
			lc.DumpLogs(&b)
			t.Log(b.String())
		}
	})
	return &cluster{lc: lc, dir: lc.Dir, NATSURL: lc.NATSURL,
		A: edge{ID: lc.A.ID, Name: lc.A.ID, HTTP: lc.A.HTTP, MQTT: lc.A.MQTT},
		B: edge{ID: lc.B.ID, Name: lc.B.ID, HTTP: lc.B.HTTP, MQTT: lc.B.MQTT},
	}
}

// runHerald runs bin/herald as make run starts it, with env added to
// its environment, stopped at the end of the test (its log shown if the
// test failed).
func runHerald(t *testing.T, env ...string) *localcluster.Embedded {
	t.Helper()
	h, err := localcluster.StartEmbedded(t.TempDir(), env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(h.Log)
			t.Logf("--- herald log\n%s", b)
		}
	})
	return h
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
	pid, err := c.lc.PID(name)
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
