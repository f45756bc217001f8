package tenancy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/eclipse/paho.golang/paho"
)

const waitFor = 5 * time.Second

// revokeBound is how fast a revoked key's connections must be closed.
const revokeBound = 2 * time.Second

var tenantsOnce sync.Once

// tenants creates acme and beta once for the package's tests.
func tenants(t *testing.T) {
	t.Helper()
	tenantsOnce.Do(func() {
		createTenant(t, "acme", nil)
		createTenant(t, "beta", nil)
		settle()
	})
}

// mqttClient is a Paho MQTT 5 client and what the server sent it.
type mqttClient struct {
	*paho.Client
	msgs   chan *paho.Publish
	closed chan struct{} // closed on the server's DISCONNECT or a connection error
	once   sync.Once
	reason byte // the DISCONNECT's reason code, if one came; read after closed
}

// connectMQTT connects with the token as the password and returns the
// client, or the CONNACK's reason code if refused.
func connectMQTT(t *testing.T, addr, clientID, token string) (*mqttClient, byte) {
	t.Helper()
	c, ca, err := dialMQTT(t, addr, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30}, token)
	if err != nil {
		if ca == nil {
			t.Fatalf("connect %s to %s: %v", clientID, addr, err)
		}
		return nil, ca.ReasonCode
	}
	return c, 0
}

// dialMQTT connects a Paho MQTT 5 client with cp, the token (if any) as
// the password; on success it is disconnected at the end of the test.
func dialMQTT(t *testing.T, addr string, cp *paho.Connect, token string) (*mqttClient, *paho.Connack, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	c := &mqttClient{msgs: make(chan *paho.Publish, 1024), closed: make(chan struct{})}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			c.once.Do(func() { c.reason = d.ReasonCode; close(c.closed) })
		},
		OnClientError: func(error) { c.once.Do(func() { close(c.closed) }) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if token != "" {
		cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = "ignored", true, []byte(token), true
	}
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return nil, ca, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ca, nil
}

func mustConnect(t *testing.T, addr, clientID, token string) *mqttClient {
	t.Helper()
	c, code := connectMQTT(t, addr, clientID, token)
	if c == nil {
		t.Fatalf("connect %s to %s refused: CONNACK 0x%02X", clientID, addr, code)
	}
	return c
}

// subscribe returns the SUBACK reason code of one filter.
func (c *mqttClient) subscribe(t *testing.T, filter string, qos byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if sa == nil || len(sa.Reasons) != 1 {
		t.Fatalf("subscribe %s: %+v %v", filter, sa, err)
	}
	return sa.Reasons[0]
}

// publish publishes at QoS 1 and returns the PUBACK reason code.
func (c *mqttClient) publish(t *testing.T, topic, payload string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if pr == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return pr.ReasonCode
}

func (c *mqttClient) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message within", waitFor)
		return nil
	}
}

// TestMQTTCapabilities: a key's client publishes and subscribes within its
// capabilities; a wrong secret is CONNACK 0x86; a publish outside them is
// PUBACK 0x87, a subscription outside them SUBACK 0x87.
func TestMQTTCapabilities(t *testing.T) {
	tenants(t)
	key := createKey(t, "acme", caps("sensors/#", "publish", "subscribe"), caps("alerts/+", "subscribe"))
	settle()

	c := mustConnect(t, cluster.A.MQTT, "acme-caps", key.Token)
	if code := c.subscribe(t, "sensors/#", 1); code != 1 {
		t.Fatalf("SUBACK sensors/#: 0x%02X, want 0x01", code)
	}
	if code := c.publish(t, "sensors/t1", "21.5"); code != 0 {
		t.Fatalf("PUBACK sensors/t1: 0x%02X, want 0", code)
	}
	if m := c.next(t); m.Topic != "sensors/t1" || string(m.Payload) != "21.5" {
		t.Fatalf("got %s %q", m.Topic, m.Payload)
	}
	if code := c.publish(t, "alerts/fire", "x"); code != 0x87 {
		t.Fatalf("PUBACK alerts/fire (subscribe only): 0x%02X, want 0x87", code)
	}
	if code := c.publish(t, "admin/reboot", "x"); code != 0x87 {
		t.Fatalf("PUBACK admin/reboot: 0x%02X, want 0x87", code)
	}
	if code := c.subscribe(t, "#", 1); code != 0x87 {
		t.Fatalf("SUBACK #: 0x%02X, want 0x87", code)
	}
	if code := c.subscribe(t, "alerts/+", 0); code != 0 {
		t.Fatalf("SUBACK alerts/+: 0x%02X, want 0", code)
	}

	// The same key id with a wrong secret, and a token that is no key.
	wrong := key.Token[:strings.LastIndex(key.Token, "_")+1] + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	if c, code := connectMQTT(t, cluster.B.MQTT, "acme-wrong", wrong); c != nil || code != 0x86 {
		t.Fatalf("wrong secret: CONNACK 0x%02X, want 0x86", code)
	}
	// No credentials: the local cluster admits them into its anonymous
	// dev tenant, which stays as it was.
	anon := mustConnect(t, cluster.B.MQTT, "anon", "")
	if code := anon.publish(t, "anything/at/all", "dev"); code != 0 {
		t.Fatalf("anonymous PUBACK: 0x%02X", code)
	}
}

// TestIsolation: acme's "#" subscriber never receives beta's messages.
func TestIsolation(t *testing.T) {
	tenants(t)
	ak := createKey(t, "acme", caps("#", "publish", "subscribe"))
	bk := createKey(t, "beta", caps("#", "publish", "subscribe"))
	settle()
	a := mustConnect(t, cluster.A.MQTT, "acme-all", ak.Token)
	if code := a.subscribe(t, "#", 1); code != 1 {
		t.Fatalf("SUBACK #: 0x%02X", code)
	}
	b := mustConnect(t, cluster.B.MQTT, "beta-all", bk.Token)
	for i := range 10 {
		if code := b.publish(t, fmt.Sprintf("sensors/t%d", i), "beta"); code != 0 {
			t.Fatalf("beta PUBACK: 0x%02X", code)
		}
	}
	// A marker on acme after beta's messages: acme's subscriber gets it,
	// and nothing of beta's before it.
	if code := a.publish(t, "marker", "acme"); code != 0 {
		t.Fatalf("marker PUBACK: 0x%02X", code)
	}
	if m := a.next(t); m.Topic != "marker" || string(m.Payload) != "acme" {
		t.Fatalf("acme's # got %s %q before its marker", m.Topic, m.Payload)
	}
	select {
	case m := <-a.msgs:
		t.Fatalf("acme's # got %s %q", m.Topic, m.Payload)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestRevokeDisconnects: revoking a key through the admin API closes its
// MQTT client (edge A), SSE stream (edge B) and WebSocket (edge A) within
// 2 s.
func TestRevokeDisconnects(t *testing.T) {
	tenants(t)
	key := createKey(t, "acme", caps("sensors/#", "publish", "subscribe"))
	other := createKey(t, "acme", caps("sensors/#", "publish", "subscribe"))
	settle()

	m := mustConnect(t, cluster.A.MQTT, "acme-revoked", key.Token)
	survivor := mustConnect(t, cluster.A.MQTT, "acme-survivor", other.Token)

	// SSE on edge B with the bearer token.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", cluster.B.HTTP+"/sse?topic=sensors/%23", nil)
	req.Header.Set("Authorization", "Bearer "+key.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE: %d", resp.StatusCode)
	}
	sseClosed := make(chan struct{})
	go func() {
		defer close(sseClosed)
		r := bufio.NewReader(resp.Body)
		for {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
		}
	}()

	// WebSocket on edge A.
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(cluster.A.HTTP, "http")+"/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + key.Token}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := wsjson.Write(ctx, ws, map[string]any{"op": "subscribe", "id": "s1", "topic": "sensors/#"}); err != nil {
		t.Fatal(err)
	}
	wsClosed := make(chan websocket.StatusCode, 1)
	go func() {
		for {
			var v map[string]any
			if err := wsjson.Read(context.Background(), ws, &v); err != nil {
				wsClosed <- websocket.CloseStatus(err)
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // the SSE and WebSocket streams are registered

	start := time.Now()
	admin(t, "DELETE", "/v1/tenants/acme/keys/"+key.ID, nil, nil)
	deadline := time.After(revokeBound)
	var mqttAfter, sseAfter, wsAfter time.Duration
	var wsCode websocket.StatusCode
	for mqttAfter == 0 || sseAfter == 0 || wsAfter == 0 {
		select {
		case <-m.closed:
			mqttAfter, m.closed = time.Since(start), nil
		case <-sseClosed:
			sseAfter, sseClosed = time.Since(start), nil
		case wsCode = <-wsClosed:
			wsAfter, wsClosed = time.Since(start), nil
		case <-deadline:
			t.Fatalf("not all closed within %s: mqtt %s, sse %s, ws %s", revokeBound, mqttAfter, sseAfter, wsAfter)
		}
	}
	t.Logf("revoke → closed: MQTT (edge A) %s, SSE (edge B) %s, WebSocket (edge A) %s", mqttAfter, sseAfter, wsAfter)
	if m.reason != 0x87 {
		t.Errorf("MQTT DISCONNECT reason 0x%02X, want 0x87", m.reason)
	}
	if wsCode != websocket.StatusPolicyViolation {
		t.Errorf("WebSocket close %d, want 1008", wsCode)
	}
	// The other key's client is still served; the revoked key is refused.
	if code := survivor.publish(t, "sensors/after", "x"); code != 0 {
		t.Fatalf("survivor PUBACK: 0x%02X", code)
	}
	if c, code := connectMQTT(t, cluster.B.MQTT, "acme-revoked-again", key.Token); c != nil || code != 0x86 {
		t.Fatalf("revoked key: CONNACK 0x%02X, want 0x86", code)
	}
}

// TestLoweredRateLimit: lowering acme's message rate through the admin API
// throttles its publishes within the next second, with PUBACK 0x97.
func TestLoweredRateLimit(t *testing.T) {
	tenants(t)
	key := createKey(t, "acme", caps("rate/#", "publish"))
	settle()
	c := mustConnect(t, cluster.A.MQTT, "acme-rate", key.Token)
	for i := range 20 {
		if code := c.publish(t, "rate/before", fmt.Sprint(i)); code != 0 {
			t.Fatalf("PUBACK before the limit: 0x%02X", code)
		}
	}
	t.Cleanup(func() {
		admin(t, "PATCH", "/v1/tenants/acme", map[string]any{"limits": map[string]any{"maxMessagesPerSecond": "0"}}, nil)
	})
	admin(t, "PATCH", "/v1/tenants/acme", map[string]any{"limits": map[string]any{"maxMessagesPerSecond": "5"}}, nil)
	start := time.Now()
	sent := 0
	for time.Since(start) < time.Second {
		code := c.publish(t, "rate/after", fmt.Sprint(sent))
		sent++
		if code == 0x97 {
			t.Logf("throttled %s after the PATCH, at publish %d", time.Since(start), sent)
			return
		}
		if code != 0 {
			t.Fatalf("PUBACK 0x%02X, want 0 or 0x97", code)
		}
	}
	t.Fatalf("%d publishes in the second after lowering the rate to 5/s, none refused", sent)
}

// TestConnectionLimitAcrossEdges: beta at its connection limit (1) on edge
// A cannot open another connection on edge B: CONNACK 0x97.
func TestConnectionLimitAcrossEdges(t *testing.T) {
	tenants(t)
	key := createKey(t, "beta", caps("#", "publish", "subscribe"))
	t.Cleanup(func() {
		admin(t, "PATCH", "/v1/tenants/beta", map[string]any{"limits": map[string]any{"maxConnections": "0"}}, nil)
	})
	admin(t, "PATCH", "/v1/tenants/beta", map[string]any{"limits": map[string]any{"maxConnections": "1"}}, nil)
	settle()
	// Earlier tests' beta connections are released as they close.
	var first *mqttClient
	for deadline := time.Now().Add(waitFor); first == nil; {
		c, code := connectMQTT(t, cluster.A.MQTT, "beta-1", key.Token)
		switch {
		case c != nil:
			first = c
		case code != 0x97 || time.Now().After(deadline):
			t.Fatalf("first beta connection: CONNACK 0x%02X", code)
		default:
			time.Sleep(100 * time.Millisecond)
		}
	}
	if c, code := connectMQTT(t, cluster.B.MQTT, "beta-2", key.Token); c != nil || code != 0x97 {
		t.Fatalf("second beta connection on edge B: CONNACK 0x%02X, want 0x97", code)
	}
	// SSE on edge B is refused too (429), before any stream.
	req, _ := http.NewRequest("GET", cluster.B.HTTP+"/sse?topic=a", nil)
	req.Header.Set("Authorization", "Bearer "+key.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("SSE over the limit: %d, want 429", resp.StatusCode)
	}
	// Once the first leaves, a connection on B is admitted.
	_ = first.Disconnect(&paho.Disconnect{})
	for deadline := time.Now().Add(waitFor); ; {
		c, code := connectMQTT(t, cluster.B.MQTT, "beta-3", key.Token)
		if c != nil {
			break
		}
		if code != 0x97 || time.Now().After(deadline) {
			t.Fatalf("after release: CONNACK 0x%02X", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
