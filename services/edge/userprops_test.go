package edge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/services/edge"
)

// wireMessage is what SSE data, a WebSocket message frame and a poll
// answer's message carry of a message's user properties.
type wireMessage struct {
	Type           string `json:"type"`
	ID             string `json:"id"`
	Topic          string `json:"topic"`
	UserProperties []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"user_properties"`
}

func (w wireMessage) props() paho.UserProperties {
	var out paho.UserProperties
	for _, p := range w.UserProperties {
		out = append(out, paho.UserProperty{Key: p.Key, Value: p.Value})
	}
	return out
}

// TestUserPropertiesUnalteredEverywhere ensures an MQTT 5 publisher's user
// properties — a repeated name, and herald-* names the server also uses —
// reach an MQTT 5 subscriber, SSE, WebSocket and long-poll clients exactly
// as published and in order, with nothing added.
func TestUserPropertiesUnalteredEverywhere(t *testing.T) {
	_, mqttAddr, base := startServer(t, edge.Config{AnonymousTenant: "dev"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sent := paho.UserProperties{{Key: "a", Value: "1"}, {Key: "herald-seq", Value: "forged"}, {Key: "a", Value: "2"},
		{Key: "herald-other", Value: "x"}}

	mqttClient := func(id string, got chan *paho.Publish) *paho.Client {
		conn, err := net.Dial("tcp", mqttAddr)
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { got <- pr.Packet; return true, nil }}})
		if ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil || ca.ReasonCode != 0 {
			t.Fatalf("connect %s: %v", id, err)
		}
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
		return c
	}
	mqttGot := make(chan *paho.Publish, 1)
	sub := mqttClient("sub", mqttGot)
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "up/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	// SSE.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?topic="+url.QueryEscape("up/#"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sseGot := make(chan wireMessage, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var m wireMessage
				_ = json.Unmarshal([]byte(data), &m)
				sseGot <- m
				return
			}
		}
	}()

	// WebSocket.
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := wsjson.Write(ctx, ws, map[string]any{"op": "subscribe", "id": "s1", "topic": "up/#"}); err != nil {
		t.Fatal(err)
	}
	for {
		var m wireMessage
		if err := wsjson.Read(ctx, ws, &m); err != nil {
			t.Fatal(err)
		}
		if m.Type == "ack" && m.ID == "s1" {
			break
		}
	}

	// Long-poll: the cursor of now, then the poll that waits for the message.
	poll := func(query string) (msgs []wireMessage, cursor string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/poll?topic="+url.QueryEscape("up/#")+query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans struct {
			Messages []wireMessage `json:"messages"`
			Cursor   string        `json:"cursor"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
			t.Fatalf("poll answer: %v", err)
		}
		return ans.Messages, ans.Cursor
	}
	_, cursor := poll("")

	// The SSE stream is open once the edge answered its headers; the
	// publish follows every subscription.
	pub := mqttClient("pub", make(chan *paho.Publish, 1))
	if _, err := pub.Publish(ctx, &paho.Publish{Topic: "up/x", QoS: 1, Payload: []byte("x"),
		Properties: &paho.PublishProperties{User: sent}}); err != nil {
		t.Fatal(err)
	}

	check := func(what string, got paho.UserProperties) {
		t.Helper()
		if !slices.Equal(got, sent) {
			t.Errorf("%s: user properties %v, want %v", what, got, sent)
		}
	}
	select {
	case m := <-mqttGot:
		check("MQTT 5", m.Properties.User)
	case <-ctx.Done():
		t.Fatal("no MQTT delivery")
	}
	select {
	case m := <-sseGot:
		check("SSE", m.props())
	case <-ctx.Done():
		t.Fatal("no SSE event")
	}
	for {
		var m wireMessage
		if err := wsjson.Read(ctx, ws, &m); err != nil {
			t.Fatal(err)
		}
		if m.Type == "message" {
			check("WebSocket", m.props())
			break
		}
	}
	msgs, _ := poll("&timeout=10&cursor=" + url.QueryEscape(cursor))
	if len(msgs) != 1 {
		t.Fatalf("poll answered %d messages", len(msgs))
	}
	check("poll", msgs[0].props())
}
