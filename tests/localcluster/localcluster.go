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
	"syscall"
	"time"
)

// Edge is the public addresses of one edge.
type Edge struct {
	// ID is the edge's id ("edge-a", "edge-b"), its pid file's name.
	ID   string
	MQTT string // host:port
	HTTP string // http://host:port
	Ops  string // http://host:port: /healthz, /readyz
}

// Cluster is a running local cluster.
type Cluster struct {
	// Dir holds the cluster's state, logs (Dir/logs), pids (Dir/pids) and
	// secrets.
	Dir  string
	A, B Edge
	// NATSURL is the first NATS server's URL, with the cluster's user and
	// password in it (NATSUser, NATSPassword).
	NATSURL      string
	NATSUser     string
	NATSPassword string
	RedisAddr    string
	// RedisPassword is the password of Redis, its replica and Sentinel.
	RedisPassword string
	// EtcdAddr is etcd's client address (host:port); EtcdUsers maps each
	// of its users (root, herald-admin, herald-edge) to its password.
	EtcdAddr   string
	EtcdUsers  map[string]string
	Admin      string // http://host:port
	AdminToken string // the admin API's operator token
	// HA tells whether the cluster runs the HA shape (HERALD_HA=1 in Start's
	// env): then NATSURLs has the three NATS servers (pid files nats-1..3,
	// URLs with the user and password like NATSURL),
	// RedisAddr is the first primary, RedisReplicaAddr its replica, and
	// SentinelAddr the Sentinel that services ask for the primary.
	HA               bool
	NATSURLs         []string
	RedisReplicaAddr string
	SentinelAddr     string
	env              []string
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
	ports, err := FreePorts(20)
	if err != nil {
		return nil, err
	}
	p := make([]string, len(ports))
	for i, n := range ports {
		p[i] = strconv.Itoa(n)
	}
	c := &Cluster{Dir: dir, env: append([]string{"HERALD_CLUSTER_DIR=" + dir, "HERALD_BIN=" + BinDir(),
		"NATS_PORT=" + p[0], "REDIS_PORT=" + p[1], "ETCD_PORT=" + p[2], "ETCD_PEER_PORT=" + p[3],
		"ADMIN_PORT=" + p[4], "SESSION_OPS_PORT=" + p[5], "ADMIN_OPS_PORT=" + p[19],
		"EDGE_A_MQTT=" + p[6], "EDGE_A_HTTP=" + p[7], "EDGE_A_OPS=" + p[8],
		"EDGE_B_MQTT=" + p[9], "EDGE_B_HTTP=" + p[10], "EDGE_B_OPS=" + p[11],
		// Used by the HA shape only.
		"NATS_PORT_2=" + p[12], "NATS_PORT_3=" + p[13], "NATS_ROUTE_PORT_1=" + p[14],
		"NATS_ROUTE_PORT_2=" + p[15], "NATS_ROUTE_PORT_3=" + p[16],
		"REDIS_REPLICA_PORT=" + p[17], "SENTINEL_PORT=" + p[18]}, env...)}
	if out, err := c.script("up"); err != nil {
		_, _ = c.script("down")
		return nil, fmt.Errorf("cluster up: %w\n%s", err, out)
	}
	secrets := map[string]string{}
	for _, name := range []string{"admin-token", "nats-password", "redis-password",
		"etcd-root-password", "etcd-admin-password", "etcd-edge-password"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			_ = c.Stop()
			return nil, err
		}
		secrets[name] = strings.TrimSpace(string(b))
	}
	const host = "127.0.0.1:"
	c.AdminToken, c.NATSUser, c.NATSPassword = secrets["admin-token"], "herald", secrets["nats-password"]
	c.RedisPassword = secrets["redis-password"]
	c.EtcdUsers = map[string]string{"root": secrets["etcd-root-password"],
		"herald-admin": secrets["etcd-admin-password"], "herald-edge": secrets["etcd-edge-password"]}
	natsURL := func(port string) string {
		return "nats://" + c.NATSUser + ":" + c.NATSPassword + "@" + host + port
	}
	// Addresses come from the script's environment, where env may have
	// chosen a port.
	c.NATSURL, c.RedisAddr, c.Admin = natsURL(c.Env("NATS_PORT")), host+c.Env("REDIS_PORT"), "http://"+host+c.Env("ADMIN_PORT")
	c.EtcdAddr = host + c.Env("ETCD_PORT")
	c.A = Edge{ID: "edge-a", MQTT: host + c.Env("EDGE_A_MQTT"), HTTP: "http://" + host + c.Env("EDGE_A_HTTP"),
		Ops: "http://" + host + c.Env("EDGE_A_OPS")}
	c.B = Edge{ID: "edge-b", MQTT: host + c.Env("EDGE_B_MQTT"), HTTP: "http://" + host + c.Env("EDGE_B_HTTP"),
		Ops: "http://" + host + c.Env("EDGE_B_OPS")}
	c.NATSURLs = []string{c.NATSURL}
	if c.Env("HERALD_HA") == "1" {
		c.HA = true
		c.NATSURLs = append(c.NATSURLs, natsURL(c.Env("NATS_PORT_2")), natsURL(c.Env("NATS_PORT_3")))
		c.RedisReplicaAddr, c.SentinelAddr = host+c.Env("REDIS_REPLICA_PORT"), host+c.Env("SENTINEL_PORT")
	}
	return c, nil
}

func (c *Cluster) script(args ...string) ([]byte, error) {
	cmd := exec.Command("bash", append([]string{filepath.Join(RepoRoot(), "deploy", "local", "cluster.sh")}, args...)...)
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

// Env returns the value Start gave the cluster script for the variable
// name (a port, say), or "".
func (c *Cluster) Env(name string) string {
	v := ""
	for _, e := range c.env {
		if k, val, ok := strings.Cut(e, "="); ok && k == name {
			v = val // the last one wins, as in the script's environment
		}
	}
	return v
}

// Kill sends SIGKILL to a cluster process ("edge-a", "nats-2", "redis", ...)
// and waits until it is gone: a fault, not a shutdown.
func (c *Cluster) Kill(name string) error {
	pid, err := c.PID(name)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("localcluster: kill %s (pid %d): %w", name, pid, err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !alive(pid) {
			return nil
		}
	}
	return fmt.Errorf("localcluster: %s (pid %d) still alive 10s after SIGKILL", name, pid)
}

// Terminate sends SIGTERM to a cluster process ("edge-a", ...) and waits up
// to timeout until it is gone, as an orchestrator stopping it does (an
// edge drains first).
func (c *Cluster) Terminate(name string, timeout time.Duration) error {
	pid, err := c.PID(name)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("localcluster: SIGTERM %s (pid %d): %w", name, pid, err)
	}
	for deadline := time.Now().Add(timeout); alive(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("localcluster: %s (pid %d) still alive %v after SIGTERM", name, pid, timeout)
		}
	}
	return nil
}

// Restart starts a stopped or killed process again with its original
// command line (`cluster.sh start NAME`) and waits for its port.
func (c *Cluster) Restart(name string) error {
	if out, err := c.script("start", name); err != nil {
		return fmt.Errorf("cluster start %s: %w\n%s", name, err, out)
	}
	return nil
}

// alive reports whether pid runs; a zombie (exited, not yet reaped by
// whoever inherited it) counts as gone.
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if state, ok := strings.CutPrefix(line, "State:"); ok {
			return !strings.HasPrefix(strings.TrimSpace(state), "Z")
		}
	}
	return true
}
