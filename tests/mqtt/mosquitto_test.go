package mqtt

import (
	"bufio"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// mosquittoSub runs mosquitto_sub against addr until it received count
// messages, and returns once its SUBACK granted qos; the returned channel
// yields its "topic payload" lines. stdbuf keeps its stdout line-buffered
// on the pipe.
func mosquittoSub(t *testing.T, addr, version string, qos int, filter string, count int) <-chan string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command("stdbuf", "-oL", "mosquitto_sub", "-h", host, "-p", port, "-V", version,
		"-q", fmt.Sprint(qos), "-t", filter, "-C", fmt.Sprint(count), "-v", "-d", "-W", "10")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("mosquitto_sub: %v (make test-deps installs it)", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 16)
	granted := make(chan string, 1)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "Subscribed (mid: "):
				// -d: "Subscribed (mid: 1): <granted QoS>"
				_, g, _ := strings.Cut(line, "): ")
				granted <- g
			case strings.HasPrefix(line, "Client ") || strings.HasPrefix(line, " "):
				// other -d output
			default:
				lines <- line
			}
		}
	}()
	select {
	case g := <-granted:
		if g != fmt.Sprint(qos) {
			t.Fatalf("SUBACK granted QoS %s, want %d", g, qos)
		}
	case <-time.After(waitFor):
		t.Fatal("mosquitto_sub got no SUBACK")
	}
	return lines
}

func mosquittoPub(t *testing.T, addr, version string, qos int, topic, payload string) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-V", version, "-q", fmt.Sprint(qos),
		"-t", topic, "-m", payload).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub -V %s -q %d: %v\n%s", version, qos, err, out)
	}
}

// TestMosquittoClients ensures mosquitto_pub on one edge reaches
// mosquitto_sub on the other at QoS 0, 1 and 2 with MQTT 3.1.1 and 5, and
// that a QoS 2 message is delivered once.
func TestMosquittoClients(t *testing.T) {
	for _, version := range []string{"mqttv311", "mqttv5"} {
		for qos := range 3 {
			t.Run(fmt.Sprintf("%s qos %d", version, qos), func(t *testing.T) {
				topic := fmt.Sprintf("mosq/%s/%d", version, qos)
				lines := mosquittoSub(t, cluster.A.MQTT, version, qos, topic, 2)
				mosquittoPub(t, cluster.B.MQTT, version, qos, topic, "one")
				mosquittoPub(t, cluster.B.MQTT, version, qos, topic, "two")
				var got []string
				for line := range lines {
					got = append(got, line)
				}
				want := []string{topic + " one", topic + " two"}
				if strings.Join(got, "|") != strings.Join(want, "|") {
					t.Fatalf("mosquitto_sub printed %q, want %q", got, want)
				}
			})
		}
	}
}
