package tenancy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestIsolationRetainedReplaySessions ensures what a tenant keeps never
// reaches another: beta's retained messages are not delivered to acme's
// new `#` subscriber, acme's SSE replay from the start of its stream holds
// none of beta's messages, and a persistent session of beta is not found by
// acme connecting with the same client id.
func TestIsolationRetainedReplaySessions(t *testing.T) {
	tenants(t)
	ak := createKey(t, "acme", caps("#", "publish", "subscribe", "history"))
	bk := createKey(t, "beta", caps("#", "publish", "subscribe", "history"))
	settle()

	// Beta: retained messages over HTTP, and a persistent session.
	for i := range 3 {
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/publish?topic=iso/r%d&retain=1&qos=1", cluster.B.HTTP, i), strings.NewReader("beta-secret"))
		req.Header.Set("Authorization", "Bearer "+bk.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("beta retained publish: %s", resp.Status)
		}
	}
	if present := persistentConnect(t, cluster.B.MQTT, "iso-same-id", bk.Token, true); present {
		t.Log("beta's session already existed (earlier run)")
	}

	// Acme: a persistent connect with the same client id finds no session.
	if present := persistentConnect(t, cluster.A.MQTT, "iso-same-id", ak.Token, false); present {
		t.Fatal("acme found beta's persistent session (SessionPresent)")
	}

	// Acme: a new # subscriber gets none of beta's retained messages.
	a := mustConnect(t, cluster.A.MQTT, "iso-acme-sub", ak.Token)
	if code := a.subscribe(t, "#", 1); code != 1 {
		t.Fatalf("SUBACK #: 0x%02X", code)
	}
	if code := a.publish(t, "iso/marker", "acme-marker"); code != 0 {
		t.Fatalf("marker PUBACK: 0x%02X", code)
	}
	for {
		m := a.next(t)
		if string(m.Payload) == "beta-secret" {
			t.Fatalf("acme received beta's retained %s", m.Topic)
		}
		if string(m.Payload) == "acme-marker" {
			break
		}
	}

	// Acme: SSE replay from the start of its own stream, up to its marker.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", cluster.B.HTTP+"/sse?topic=%23&lastEventId=0", nil)
	req.Header.Set("Authorization", "Bearer "+ak.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE replay: %s", resp.Status)
	}
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("replay ended before acme's marker: %v", err)
		}
		if strings.Contains(line, "beta-secret") {
			t.Fatalf("acme's replay holds beta's message: %s", line)
		}
		if strings.Contains(line, "acme-marker") {
			return
		}
	}
}

// persistentConnect connects with clean start false and a session expiry,
// reports SessionPresent, and (if keep) subscribes so the session has state.
func persistentConnect(t *testing.T, addr, clientID, token string, keep bool) bool {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	expiry := uint32(300)
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: false, KeepAlive: 30,
		Username: "ignored", UsernameFlag: true, Password: []byte(token), PasswordFlag: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("persistent connect %s: %v", clientID, err)
	}
	if keep {
		if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "iso/#", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.Disconnect(&paho.Disconnect{})
	time.Sleep(100 * time.Millisecond) // the session is saved at disconnect
	return ca.SessionPresent
}
