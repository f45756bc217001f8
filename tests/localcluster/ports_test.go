package localcluster

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// scriptEnv is the environment of a cluster.sh run in dir on free ports,
// with fake binaries that fail if anything runs them, plus extra.
func scriptEnv(t *testing.T, dir string, extra ...string) []string {
	t.Helper()
	bin := t.TempDir()
	for _, b := range []string{"nats-server", "etcd", "herald-edge", "herald-session", "herald-admin"} {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\necho \"$0 must not run\" >&2\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ports, err := FreePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	vars := []string{"NATS_PORT", "REDIS_PORT", "ETCD_PORT", "ETCD_PEER_PORT", "ADMIN_PORT", "SESSION_OPS_PORT",
		"ADMIN_OPS_PORT", "EDGE_A_MQTT", "EDGE_A_HTTP", "EDGE_A_OPS", "EDGE_B_MQTT", "EDGE_B_HTTP", "EDGE_B_OPS",
		"NATS_PORT_2", "NATS_PORT_3", "NATS_ROUTE_PORT_1", "NATS_ROUTE_PORT_2", "NATS_ROUTE_PORT_3",
		"REDIS_REPLICA_PORT", "SENTINEL_PORT"}
	env := append(os.Environ(), "HERALD_CLUSTER_DIR="+dir, "HERALD_BIN="+bin)
	for i, v := range vars {
		env = append(env, v+"="+strconv.Itoa(ports[i]))
	}
	return append(env, extra...)
}

// TestUpNamesTheTakenPort ensures `cluster.sh up` starts nothing when a
// port it needs is taken (as Debian's redis-server service takes 6379) and
// says which port, for which process of the cluster, and who holds it.
func TestUpNamesTheTakenPort(t *testing.T) {
	for _, tc := range []struct {
		variable, name string
		ha             bool
	}{
		{"REDIS_PORT", "redis", false},
		{"EDGE_A_MQTT", "edge-a", false},
		{"EDGE_B_OPS", "edge-b", false},
		{"SENTINEL_PORT", "sentinel", true},
	} {
		t.Run(tc.variable, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
			dir := t.TempDir()
			extra := []string{tc.variable + "=" + port}
			if tc.ha {
				extra = append(extra, "HERALD_HA=1")
			}
			cmd := exec.Command("bash", filepath.Join(RepoRoot(), "deploy", "local", "cluster.sh"), "up")
			cmd.Env = scriptEnv(t, dir, extra...)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("cluster.sh up succeeded with %s taken:\n%s", tc.variable, out)
			}
			// The holder is this test's process, named by pid and command line.
			want := regexp.MustCompile(`port ` + port + ` \(` + tc.variable + `, for ` + tc.name + `\) is taken by pid ` +
				strconv.Itoa(os.Getpid()) + ` \(` + regexp.QuoteMeta(os.Args[0]))
			if !want.Match(out) {
				t.Fatalf("cluster.sh up said:\n%s\nwant a line matching %s", out, want)
			}
			if strings.Contains(string(out), "must not run") {
				t.Fatalf("cluster.sh up started a process:\n%s", out)
			}
			if pids, _ := filepath.Glob(filepath.Join(dir, "pids", "*.pid")); len(pids) > 0 {
				t.Fatalf("cluster.sh up left pid files %v", pids)
			}
		})
	}
}

// TestUpRefusesARunningCluster ensures a second `cluster.sh up` on the same
// state directory says the cluster runs rather than colliding with it.
func TestUpRefusesARunningCluster(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pids"), 0o700); err != nil {
		t.Fatal(err)
	}
	// This test's own process stands for a running edge.
	if err := os.WriteFile(filepath.Join(dir, "pids", "edge-a.pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", filepath.Join(RepoRoot(), "deploy", "local", "cluster.sh"), "up")
	cmd.Env = scriptEnv(t, dir)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already running from "+dir+" (edge-a): make cluster-down first") {
		t.Fatalf("cluster.sh up on a running cluster: err %v, output:\n%s", err, out)
	}
}
