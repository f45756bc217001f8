package mqtt

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// ownCluster is a local cluster of the test's own, for tests that kill a
// part of it.
type ownCluster struct {
	A, B edge
	dir  string
}

// newCluster starts a local cluster on free ports in a temporary directory
// and stops it (by the PIDs cluster.sh recorded) when the test ends.
func newCluster(t *testing.T) *ownCluster {
	t.Helper()
	dir := t.TempDir()
	ports, err := freePorts(12)
	if err != nil {
		t.Fatal(err)
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
	run := func(arg string) ([]byte, error) {
		cmd := exec.Command("bash", script, arg)
		cmd.Env = append(os.Environ(), env...)
		return cmd.CombinedOutput()
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(filepath.Join(dir, "logs"))
		}
		if out, err := run("down"); err != nil {
			t.Errorf("cluster down: %v\n%s", err, out)
		}
	})
	if out, err := run("up"); err != nil {
		t.Fatalf("cluster up: %v\n%s", err, out)
	}
	return &ownCluster{dir: dir,
		A: edge{MQTT: "127.0.0.1:" + p[6], WS: "ws://127.0.0.1:" + p[7] + "/mqtt"},
		B: edge{MQTT: "127.0.0.1:" + p[9], WS: "ws://127.0.0.1:" + p[10] + "/mqtt"}}
}

// kill9 sends SIGKILL to one process of the cluster (e.g. "edge-a"), by
// the PID cluster.sh recorded.
func (c *ownCluster) kill9(t *testing.T, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, "pids", name+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %s (%d): %v", name, pid, err)
	}
}
