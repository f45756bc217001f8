package tenancy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// httpPublish publishes one QoS 1 message through an edge's POST /publish
// and returns its position ("<epoch>-<seq>").
func httpPublish(t *testing.T, edge, token, topic, payload string, retain bool) string {
	t.Helper()
	q := url.Values{"topic": {topic}, "qos": {"1"}}
	if retain {
		q.Set("retain", "1")
	}
	req, err := http.NewRequest("POST", edge+"/publish?"+q.Encode(), strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		Position string `json:"position"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || out.Position == "" {
		t.Fatalf("publish %s on %s: %s %s", topic, edge, resp.Status, b)
	}
	return out.Position
}

// epochOf returns the epoch of a position.
func epochOf(pos string) string { return pos[:strings.LastIndexByte(pos, '-')] }

// TestTenantDeletedAndCreatedAgain ensures deleting a tenant through the
// admin API disconnects its clients and deletes its data on every part of
// the cluster: created again under the same id, the tenant has no retained
// message, no history (a poll from the start holds only new messages, a
// poll or an SSE resume from an old position is told of a gap and gets
// nothing old), no persistent session, and every edge — the one that had
// cached the old stream's epoch too — stamps its positions with the new
// epoch.
func TestTenantDeletedAndCreatedAgain(t *testing.T) {
	const id = "phoenix"
	all := caps("#", "publish", "subscribe", "history")
	createTenant(t, id, nil)
	old := createKey(t, id, all)
	settle()
	oldPos := httpPublish(t, cluster.A.HTTP, old.Token, "old/r", "old-secret", true)
	httpPublish(t, cluster.B.HTTP, old.Token, "old/x", "old-secret", false)
	persistentConnect(t, cluster.A.MQTT, "phoenix-device", old.Token, true)
	connected := mustConnect(t, cluster.B.MQTT, "phoenix-live", old.Token)

	admin(t, "DELETE", "/v1/tenants/"+id, nil, nil)
	select {
	case <-connected.closed:
	case <-time.After(revokeBound):
		t.Fatal("the deleted tenant's client is still connected")
	}

	createTenant(t, id, nil)
	k := createKey(t, id, all)
	settle()
	first := httpPublish(t, cluster.B.HTTP, k.Token, "new/1", "new-1", false)
	second := httpPublish(t, cluster.A.HTTP, k.Token, "new/2", "new-2", false)
	if epochOf(first) == epochOf(oldPos) || first != epochOf(first)+"-1" {
		t.Fatalf("first position of the tenant created again: %s (before the deletion: %s)", first, oldPos)
	}
	if epochOf(second) != epochOf(first) {
		t.Fatalf("edge A stamps %s, edge B %s: an edge kept the old stream's epoch (before the deletion: %s)", second, first, oldPos)
	}

	// No retained message: a new "#" subscriber gets its own marker first.
	c := mustConnect(t, cluster.A.MQTT, "phoenix-sub", k.Token)
	if code := c.subscribe(t, "#", 1); code != 1 {
		t.Fatalf("SUBACK #: 0x%02X", code)
	}
	if code := c.publish(t, "new/marker", "marker"); code != 0 {
		t.Fatalf("marker PUBACK: 0x%02X", code)
	}
	for m := c.next(t); string(m.Payload) != "marker"; m = c.next(t) {
		if string(m.Payload) == "old-secret" {
			t.Fatalf("the tenant created again received the deleted tenant's retained %s", m.Topic)
		}
	}
	// No persistent session.
	if persistentConnect(t, cluster.B.MQTT, "phoenix-device", k.Token, false) {
		t.Fatal("the deleted tenant's persistent session survived (SessionPresent)")
	}
	// No history: from the start, only new messages; from an old
	// position, a gap first.
	for _, cursor := range []string{"0", oldPos} {
		var p struct {
			Messages []struct {
				Payload string `json:"payload"`
			} `json:"messages"`
			Gap bool `json:"gap"`
		}
		req, _ := http.NewRequest("GET", cluster.A.HTTP+"/poll?topic=%23&timeout=0&cursor="+cursor, nil)
		req.Header.Set("Authorization", "Bearer "+k.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("poll from %s: %s %v", cursor, resp.Status, err)
		}
		var got []string
		for _, m := range p.Messages {
			got = append(got, m.Payload)
		}
		switch {
		case strings.Contains(strings.Join(got, " "), "old-secret"):
			t.Fatalf("poll from %s returned the deleted tenant's messages: %v", cursor, got)
		case cursor == oldPos && !p.Gap:
			t.Fatalf("poll from the old position %s: no gap (payloads %v)", cursor, got)
		case cursor == "0" && (p.Gap || len(got) != 3):
			t.Fatalf("poll from the start: gap %v, payloads %v; want the 3 new messages", p.Gap, got)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", cluster.B.HTTP+"/sse?topic=%23&lastEventId="+url.QueryEscape(oldPos), nil)
	req.Header.Set("Authorization", "Bearer "+k.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The client is told of the gap (its position is another epoch's),
	// then gets what is published next, and nothing old.
	r := bufio.NewReader(resp.Body)
	var events []string
	for published := false; ; {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("SSE resume from the old position ended early: %v (events %v)", err, events)
		}
		if strings.Contains(line, "old-secret") {
			t.Fatalf("SSE resume from the old position replayed the deleted tenant's message: %s", line)
		}
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "event: "); ok {
			events = append(events, name)
		}
		if !published && len(events) > 0 {
			if events[0] != "gap" {
				t.Fatalf("SSE resume from the old position: events %v, want a gap first", events)
			}
			httpPublish(t, cluster.A.HTTP, k.Token, "new/after-gap", "after-gap", false)
			published = true
		}
		if strings.Contains(line, "after-gap") {
			return
		}
	}
}
