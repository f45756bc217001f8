// Package localcluster starts Herald's local cluster — deploy/local/cluster.sh:
// NATS, Redis, etcd, two edges, the session service and admin as processes —
// on free loopback ports in a directory of the caller's, for the end-to-end
// test suites. The binaries come from bin/ (`make build servers`), or from
// $HERALD_BIN.
package localcluster

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// Edge is the public addresses of one edge.
type Edge struct {
	// ID is the edge's id ("edge-a", "edge-b"), its pid file's name.
	ID   string
	MQTT string // host:port
	HTTP string // http://host:port
}

// Cluster is a running local cluster.
type Cluster struct {
	// Dir holds the cluster's state, logs (Dir/logs) and pids (Dir/pids).
	Dir        string
	A, B       Edge
	NATSURL    string
	RedisAddr  string
	Admin      string // http://host:port
	AdminToken string // the admin API's operator token
	env        []string
}

// RepoRoot is the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir is where the binaries are: $HERALD_BIN, or bin/ of the repository.
func BinDir() string {
	if d := os.Getenv("HERALD_BIN"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "bin")
}

// FreePorts returns n distinct free loopback ports above 10000 (browsers
// block some lower ones).
func FreePorts(n int) ([]int, error) {
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

// Start runs `cluster.sh up` with its state in dir and every port free;
// env adds variables (e.g. edge flags the script passes on). On error
// nothing is left running.
func Start(dir string, env ...string) (*Cluster, error) {
	for _, b := range []string{"nats-server", "etcd", "herald-edge", "herald-session", "herald-admin"} {
		if _, err := os.Stat(filepath.Join(BinDir(), b)); err != nil {
			return nil, fmt.Errorf("%s is missing: run `make build servers` (make test does)", filepath.Join(BinDir(), b))
		}
	}
	ports, err := FreePorts(12)
	if err != nil {
		return nil, err
	}
	p := make([]string, len(ports))
	for i, n := range ports {
		p[i] = strconv.Itoa(n)
	}
	c := &Cluster{Dir: dir, env: append([]string{"HERALD_CLUSTER_DIR=" + dir, "HERALD_BIN=" + BinDir(),
		"NATS_PORT=" + p[0], "REDIS_PORT=" + p[1], "ETCD_PORT=" + p[2], "ETCD_PEER_PORT=" + p[3],
		"ADMIN_PORT=" + p[4], "SESSION_OPS_PORT=" + p[5],
		"EDGE_A_MQTT=" + p[6], "EDGE_A_HTTP=" + p[7], "EDGE_A_OPS=" + p[8],
		"EDGE_B_MQTT=" + p[9], "EDGE_B_HTTP=" + p[10], "EDGE_B_OPS=" + p[11]}, env...)}
	if out, err := c.script("up"); err != nil {
		_, _ = c.script("down")
		return nil, fmt.Errorf("cluster up: %w\n%s", err, out)
	}
	tok, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		_ = c.Stop()
		return nil, err
	}
	const host = "127.0.0.1:"
	c.AdminToken = strings.TrimSpace(string(tok))
	c.NATSURL, c.RedisAddr, c.Admin = "nats://"+host+p[0], host+p[1], "http://"+host+p[4]
	c.A = Edge{ID: "edge-a", MQTT: host + p[6], HTTP: "http://" + host + p[7]}
	c.B = Edge{ID: "edge-b", MQTT: host + p[9], HTTP: "http://" + host + p[10]}
	return c, nil
}

func (c *Cluster) script(arg string) ([]byte, error) {
	cmd := exec.Command("bash", filepath.Join(RepoRoot(), "deploy", "local", "cluster.sh"), arg)
	cmd.Env = append(os.Environ(), c.env...)
	return cmd.CombinedOutput()
}

// Stop runs `cluster.sh down`: it stops exactly the processes it started.
func (c *Cluster) Stop() error {
	if out, err := c.script("down"); err != nil {
		return fmt.Errorf("cluster down: %w\n%s", err, out)
	}
	return nil
}

// PID returns the pid of a cluster process ("edge-a", "session", "nats", ...).
func (c *Cluster) PID(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(c.Dir, "pids", name+".pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, errors.New("localcluster: bad pid file for " + name)
	}
	return pid, nil
}

// DumpLogs writes the last lines of every process's log to w, for a
// failed test's output.
func (c *Cluster) DumpLogs(w io.Writer) {
	dir := filepath.Join(c.Dir, "logs")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		lines := strings.Split(string(b), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(w, "--- %s (tail)\n%s\n", e.Name(), strings.Join(lines, "\n"))
	}
}
