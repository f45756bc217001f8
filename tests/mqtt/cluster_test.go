// Package mqtt runs Herald's MQTT end to end on the local cluster
// (deploy/local/cluster.sh: NATS, Redis, etcd, edges A and B, session,
// admin on free loopback ports) with clients nobody here wrote: Eclipse
// Paho Go v5, mosquitto_pub/mosquitto_sub, and MQTT.js over WebSocket.
//
// The binaries must be built first (`make build servers`; $HERALD_BIN
// points elsewhere), and MQTT.js installed (`npm ci` in tests/mqttjs).
package mqtt

import (
	"context"
	"fmt"
	"github.com/heraldmq/herald/tests/localcluster"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// edge is the public addresses of one edge.
type edge struct {
	MQTT string // host:port
	WS   string // ws://host:port/mqtt
}

// cluster is the one local cluster the package's tests share.
var cluster struct {
	A, B edge
}

// edgeOf maps a local-cluster edge to the addresses these tests use.
func edgeOf(e localcluster.Edge) edge {
	return edge{MQTT: e.MQTT, WS: "ws" + strings.TrimPrefix(e.HTTP, "http") + "/mqtt"}
}

// TestMain starts the local cluster once for all tests (it takes seconds)
// and stops it, by the PIDs cluster.sh recorded, at the end.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "herald-mqtt-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	c, err := localcluster.Start(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	cluster.A, cluster.B = edgeOf(c.A), edgeOf(c.B)
	code := m.Run()
	if code != 0 {
		c.DumpLogs(os.Stderr)
	}
	return code
}

const waitFor = 5 * time.Second

// client is a Paho MQTT 5 client and what the server sent it.
type client struct {
	*paho.Client
	msgs        chan *paho.Publish
	disconnects chan *paho.Disconnect
}

func dial(t *testing.T, addr, clientID string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{msgs: make(chan *paho.Publish, 1024), disconnects: make(chan *paho.Disconnect, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { c.disconnects <- d },
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("connect %s to %s: %v", clientID, addr, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func (c *client) subscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil || sa.Reasons[0] != qos {
		t.Fatalf("subscribe %s: %+v %v", filter, sa, err)
	}
}

func (c *client) publish(t *testing.T, topic string, qos byte, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// TestTakeoverAcrossEdges ensures a CONNECT on edge B closes the
// connection of the same client identifier on edge A within one second,
// the Paho client on A seeing DISCONNECT 0x8E (Session taken over).
func TestTakeoverAcrossEdges(t *testing.T) {
	first := dial(t, cluster.A.MQTT, "e2e-roaming")
	start := time.Now()
	second := dial(t, cluster.B.MQTT, "e2e-roaming")
	select {
	case d := <-first.disconnects:
		if d.ReasonCode != 0x8E {
			t.Fatalf("DISCONNECT %#x, want 0x8E", d.ReasonCode)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("taken over after %s, want within 1s", took)
		}
	case <-time.After(time.Second):
		t.Fatal("the connection on edge A was not taken over within 1s")
	}
	second.subscribe(t, "roam", 1)
	second.publish(t, "roam", 1, "still here")
	select {
	case <-second.msgs:
	case <-time.After(waitFor):
		t.Fatal("the new connection does not work")
	}
}

// TestSharedSubscriptionAcrossEdges ensures a shared subscription with a
// member on each edge delivers each message exactly once across the group,
// and that both members get some.
func TestSharedSubscriptionAcrossEdges(t *testing.T) {
	a := dial(t, cluster.A.MQTT, "e2e-worker-a")
	b := dial(t, cluster.B.MQTT, "e2e-worker-b")
	a.subscribe(t, "$share/e2e/work/#", 1)
	b.subscribe(t, "$share/e2e/work/#", 1)
	pub := dial(t, cluster.A.MQTT, "e2e-producer")
	const n = 60
	for i := range n {
		pub.publish(t, fmt.Sprintf("work/%d", i), 1, "job")
	}
	// Receive until every message came; then a short look for duplicates
	// (absence has no signal).
	got := map[string]int{}
	var perMember [2]int
	total := 0
	deadline := time.After(waitFor)
	quiet := time.NewTimer(time.Hour)
	for done := false; !done; {
		select {
		case m := <-a.msgs:
			got[m.Topic]++
			perMember[0]++
			total++
		case m := <-b.msgs:
			got[m.Topic]++
			perMember[1]++
			total++
		case <-quiet.C:
			done = true
		case <-deadline:
			t.Fatalf("group got %d of %d messages", total, n)
		}
		if total == n {
			quiet.Reset(300 * time.Millisecond)
		}
	}
	for topic, k := range got {
		if k != 1 {
			t.Errorf("%s delivered %d times to the group", topic, k)
		}
	}
	if len(got) != n || perMember[0] == 0 || perMember[1] == 0 {
		t.Fatalf("group got %d distinct of %d (edge A member %d, edge B member %d)", len(got), n, perMember[0], perMember[1])
	}
}
