package mqtt

import (
	"github.com/heraldmq/herald/tests/localcluster"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestMQTTJS ensures MQTT.js over WebSocket publishes and subscribes at
// QoS 0, 1 and 2 with MQTT 3.1.1 and 5 across the two edges, by running
// the Node tests of tests/mqttjs against this cluster.
func TestMQTTJS(t *testing.T) {
	dir := filepath.Join(localcluster.RepoRoot(), "tests", "mqttjs")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "mqtt")); err != nil {
		t.Fatal("MQTT.js is not installed: run `npm ci` in tests/mqttjs (make test-deps)")
	}
	cmd := exec.Command("node", "--test")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HERALD_WS_A="+cluster.A.WS, "HERALD_WS_B="+cluster.B.WS)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
