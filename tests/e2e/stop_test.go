package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/tests/localcluster"
)

// trouble is a log line at WARN or above, in the text format of bin/herald
// and the JSON format of the cluster's services — Herald's own (WARN) and
// any library's that writes to the same stream (zap's "warn").
var trouble = regexp.MustCompile(`(?i)level=(WARN|ERROR)|"level":"(WARN|ERROR)"`)

// logSize is how much of a log file was written so far.
func logSize(t *testing.T, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

// troubleSince returns the lines at WARN or above written to path past
// offset.
func troubleSince(t *testing.T, path string, offset int64) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b[offset:]), "\n") {
		if trouble.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// TestEmbeddedStopsQuietly ensures bin/herald, started as `make run` does
// and stopped with SIGINT as Ctrl-C does, logs nothing at WARN or above on
// its way out: a normal stop looks like one.
func TestEmbeddedStopsQuietly(t *testing.T) {
	e, err := localcluster.StartEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	before := logSize(t, e.Log)
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if lines := troubleSince(t, e.Log, before); len(lines) > 0 {
		t.Fatalf("a normal stop logged at WARN or above:\n%s", strings.Join(lines, "\n"))
	}
}

// TestClusterStopsQuietly ensures each of the local cluster's Herald
// services — the edges, the session service and the admin API — stopped
// with SIGTERM as an orchestrator does, logs nothing at WARN or above on
// its way out.
func TestClusterStopsQuietly(t *testing.T) {
	c := startLocalCluster(t)
	for _, name := range []string{"edge-a", "edge-b", "session", "admin"} {
		log := filepath.Join(c.Dir, "logs", name+".log")
		before := logSize(t, log)
		if err := c.Terminate(name, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if lines := troubleSince(t, log, before); len(lines) > 0 {
			t.Errorf("%s: a normal stop logged at WARN or above:\n%s", name, strings.Join(lines, "\n"))
		}
	}
}
