package tenancy

import (
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestNarrowedKeyResume: a key narrowed through the admin API while its
// MQTT client holds a persistent session. Live, the Directory change
// closes the connection at once (DISCONNECT 0x87): capabilities are not
// swapped under a live connection. The session, resumed with the narrowed
// key on the other edge, keeps only what the key still allows: no offline
// message and no live message of the subscription it lost, and the
// session record (admin API) without it.
func TestNarrowedKeyResume(t *testing.T) {
	tenants(t)
	key := createKey(t, "acme", caps("narrow/a/#", "subscribe"), caps("narrow/b/#", "subscribe"))
	pub := createKey(t, "acme", caps("narrow/#", "publish"))
	settle()
	p := mustConnect(t, cluster.B.MQTT, "acme-narrow-pub", pub.Token)

	c, present := connectSession(t, cluster.A.MQTT, "acme-narrowed", key.Token)
	if present {
		t.Fatal("a new session is present")
	}
	for _, f := range []string{"narrow/a/#", "narrow/b/#"} {
		if code := c.subscribe(t, f, 1); code != 1 {
			t.Fatalf("SUBACK %s: 0x%02X", f, code)
		}
	}
	admin(t, "PATCH", "/v1/tenants/acme/keys/"+key.ID, map[string]any{"capabilities": []capability{caps("narrow/a/#", "subscribe")}}, nil)
	select {
	case <-c.closed:
		if c.reason != 0x87 {
			t.Fatalf("narrowed live: DISCONNECT 0x%02X, want 0x87", c.reason)
		}
	case <-time.After(revokeBound):
		t.Fatalf("the narrowed key's connection is still open after %s", revokeBound)
	}

	// Offline: one message for each subscription.
	for _, topic := range []string{"narrow/b/offline", "narrow/a/offline"} {
		if code := p.publish(t, topic, "x"); code != 0 {
			t.Fatalf("PUBACK %s: 0x%02X", topic, code)
		}
	}
	settle() // edge B's Directory has the narrowed key too
	c, present = connectSession(t, cluster.B.MQTT, "acme-narrowed", key.Token)
	if !present {
		t.Fatal("session not resumed")
	}
	if m := c.next(t); m.Topic != "narrow/a/offline" {
		t.Fatalf("first message on resume: %s, want narrow/a/offline", m.Topic)
	}
	for _, topic := range []string{"narrow/b/live", "narrow/a/live"} {
		if code := p.publish(t, topic, "x"); code != 0 {
			t.Fatalf("PUBACK %s: 0x%02X", topic, code)
		}
	}
	if m := c.next(t); m.Topic != "narrow/a/live" {
		t.Fatalf("live message: %s, want narrow/a/live", m.Topic)
	}
	// The record the session service and the admin API see.
	for deadline := time.Now().Add(waitFor); ; {
		var s struct {
			Subscriptions []string `json:"subscriptions"`
		}
		admin(t, "GET", "/v1/tenants/acme/sessions/acme-narrowed", nil, &s)
		filters := s.Subscriptions
		if slices.Equal(filters, []string{"narrow/a/#"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session record subscriptions %v, want [narrow/a/#]", filters)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// connectSession connects a persistent MQTT 5 session (clean start 0,
// expiry 300 s) and reports whether the server had one.
func connectSession(t *testing.T, addr, clientID, token string) (*mqttClient, bool) {
	t.Helper()
	expiry := uint32(300)
	c, ca, err := dialMQTT(t, addr, &paho.Connect{ClientID: clientID, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}, token)
	if err != nil {
		t.Fatalf("connect %s: %v (%+v)", clientID, err, ca)
	}
	return c, ca.SessionPresent
}
