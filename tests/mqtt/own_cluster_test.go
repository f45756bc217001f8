package mqtt

import (
	"os"
	"syscall"
	"testing"

	"github.com/heraldmq/herald/tests/localcluster"
)

// ownCluster is a local cluster of the test's own, for tests that kill a
// part of it.
type ownCluster struct {
	A, B edge
	c    *localcluster.Cluster
}

// newCluster starts a local cluster on free ports in a temporary directory
// and stops it (by the PIDs cluster.sh recorded) when the test ends; env
// adds variables to its processes' environment (e.g. a flag's HERALD_*).
func newCluster(t *testing.T, env ...string) *ownCluster {
	t.Helper()
	c, err := localcluster.Start(t.TempDir(), env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs(os.Stderr)
		}
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	return &ownCluster{c: c, A: edgeOf(c.A), B: edgeOf(c.B)}
}

// kill9 sends SIGKILL to one process of the cluster (e.g. "edge-a"), by
// the PID cluster.sh recorded.
func (c *ownCluster) kill9(t *testing.T, name string) {
	t.Helper()
	pid, err := c.c.PID(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %s (%d): %v", name, pid, err)
	}
}
