package mqtt

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
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

// TestEmptyPasswordMosquitto ensures a zero-length password (mosquitto_sub
// -P "") is verified as credentials: refused as a bad user name or
// password, MQTT 3.1.1 return code 4 and MQTT 5 0x86, so mosquitto_sub
// reports it and stops, rather than being closed without a CONNACK (3.1.1)
// and reconnecting forever, or told it made a protocol error (5).
func TestEmptyPasswordMosquitto(t *testing.T) {
	for _, version := range []string{"mqttv311", "mqttv5"} {
		t.Run(version, func(t *testing.T) {
			host, port, _ := strings.Cut(cluster.A.MQTT, ":")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "mosquitto_sub", "-h", host, "-p", port, "-V", version,
				"-u", "someone", "-P", "", "-t", "empty/pw", "-C", "1").CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("mosquitto_sub still running after 10s (no CONNACK, reconnecting?): %s", out)
			}
			if err == nil || !strings.Contains(strings.ToLower(string(out)), "bad user name or password") {
				t.Fatalf("mosquitto_sub: %v: %s, want a refusal for a bad user name or password", err, out)
			}
		})
	}
	// And a Paho MQTT 5 client sees the reason code.
	conn, err := net.DialTimeout("tcp", cluster.B.MQTT, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ack, _ := c.Connect(ctx, &paho.Connect{ClientID: "empty-pw", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: "someone", PasswordFlag: true, Password: []byte{}})
	if ack == nil || ack.ReasonCode != 0x86 {
		t.Fatalf("Paho v5 with an empty password: CONNACK %+v, want 0x86", ack)
	}
}
