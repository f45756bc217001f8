package tenancy

import (
	"encoding/base64"
	"net/http"
	"testing"
	"time"
)

// TestAdminConnectionsKick: a client connected to edge B is listed through
// the admin API on the cluster (gathered from every edge), kicked through
// it, and disconnected; the usage counts it while it is connected.
func TestAdminConnectionsKick(t *testing.T) {
	tenants(t)
	key := createKey(t, "acme", caps("sensors/#", "publish", "subscribe"))
	settle()
	victim := mustConnect(t, cluster.B.MQTT, "acme-kick-me", key.Token)
	bystander := mustConnect(t, cluster.A.MQTT, "acme-bystander", key.Token)

	type conn struct {
		ID       string `json:"id"`
		Edge     string `json:"edge"`
		Protocol string `json:"protocol"`
		ClientID string `json:"clientId"`
		KeyID    string `json:"keyId"`
	}
	var list struct {
		Connections []conn `json:"connections"`
	}
	admin(t, "GET", "/v1/tenants/acme/connections", nil, &list)
	var target *conn
	edges := map[string]bool{}
	for i, c := range list.Connections {
		edges[c.Edge] = true
		if c.ClientID == "acme-kick-me" {
			target = &list.Connections[i]
		}
	}
	if target == nil || target.Edge != "edge-b" || target.Protocol != "mqtt" || target.KeyID != "key:"+key.ID {
		t.Fatalf("acme-kick-me not listed on edge-b: %+v", list.Connections)
	}
	if !edges["edge-a"] {
		t.Fatalf("edge-a's connections missing: %+v", list.Connections)
	}
	if raw, _ := base64.RawURLEncoding.DecodeString(target.ID); string(raw) != "edge-b/acme-kick-me" {
		t.Fatalf("connection id %q decodes to %q", target.ID, raw)
	}
	var usage struct {
		Connections string `json:"connections"`
	}
	admin(t, "GET", "/v1/tenants/acme/usage", nil, &usage)
	if usage.Connections == "" || usage.Connections == "0" {
		t.Fatalf("usage: %+v", usage)
	}

	admin(t, "DELETE", "/v1/tenants/acme/connections/"+target.ID, nil, nil)
	select {
	case <-victim.closed:
	case <-time.After(waitFor):
		t.Fatal("kicked client still connected")
	}
	select {
	case <-bystander.closed:
		t.Fatal("bystander disconnected too")
	case <-time.After(200 * time.Millisecond):
	}
	admin(t, "GET", "/v1/tenants/acme/connections", nil, &list)
	for _, c := range list.Connections {
		if c.ClientID == "acme-kick-me" {
			t.Fatalf("kicked client still listed: %+v", c)
		}
	}
}

// adminStatus calls the admin REST API with the operator token and returns
// the HTTP status.
func adminStatus(t *testing.T, method, path string) int {
	t.Helper()
	req, err := http.NewRequest(method, cluster.Admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cluster.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAdminRetainedPublish: a retained message published through the admin
// API on the cluster is applied by the session service to Redis, read back
// through the admin API and delivered to a subscriber on an edge; deleting
// it through the admin API clears it.
func TestAdminRetainedPublish(t *testing.T) {
	tenants(t)
	key := createKey(t, "acme", caps("admin-e2e/#", "publish", "subscribe"))
	settle()
	sub := mustConnect(t, cluster.B.MQTT, "acme-admin-e2e", key.Token)
	sub.subscribe(t, "admin-e2e/#", 1)

	var pub struct {
		Position string `json:"position"`
	}
	admin(t, "POST", "/v1/tenants/acme/publish", map[string]any{"topic": "admin-e2e/state",
		"payload": base64.StdEncoding.EncodeToString([]byte("on")), "retain": true}, &pub)
	if pub.Position == "" {
		t.Fatal("no position")
	}
	if m := sub.next(t); m.Topic != "admin-e2e/state" || string(m.Payload) != "on" {
		t.Fatalf("delivered %s %q", m.Topic, m.Payload)
	}
	deadline := time.Now().Add(waitFor)
	for adminStatus(t, "GET", "/v1/tenants/acme/retained/admin-e2e/state") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("retained message not readable through the admin API")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var got struct {
		Payload  string `json:"payload"`
		Position string `json:"position"`
	}
	admin(t, "GET", "/v1/tenants/acme/retained/admin-e2e/state", nil, &got)
	if got.Payload != base64.StdEncoding.EncodeToString([]byte("on")) || got.Position != pub.Position {
		t.Fatalf("retained %+v, published at %s", got, pub.Position)
	}
	var list struct {
		Messages []struct {
			Topic string `json:"topic"`
		} `json:"messages"`
	}
	admin(t, "GET", "/v1/tenants/acme/retained?filter=admin-e2e/%23", nil, &list)
	if len(list.Messages) != 1 || list.Messages[0].Topic != "admin-e2e/state" {
		t.Fatalf("listed %+v", list)
	}

	admin(t, "DELETE", "/v1/tenants/acme/retained/admin-e2e/state", nil, nil)
	for adminStatus(t, "GET", "/v1/tenants/acme/retained/admin-e2e/state") != http.StatusNotFound {
		if time.Now().After(deadline.Add(waitFor)) {
			t.Fatal("retained message not cleared")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
