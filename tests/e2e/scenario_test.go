package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterWalkingSkeleton ensures, on the local cluster with real NATS,
// Redis and etcd, that one MQTT QoS 1 publish crosses the whole system: SSE,
// WebSocket and mosquitto_sub receive it with its stream sequence, retained
// messages reach later subscribers on the other edge, SSE resumes gap-free on
// the other edge, and HTTP publish reaches MQTT.
func TestClusterWalkingSkeleton(t *testing.T) {
	runScenario(t, startCluster(t))
}

// TestEmbeddedWalkingSkeleton ensures the same scenario passes against the
// single-process embedded default started as `make run` starts it.
func TestEmbeddedWalkingSkeleton(t *testing.T) {
	runScenario(t, startEmbedded(t))
}

// sseData is the JSON carried in an SSE message event.
type sseData struct {
	Topic    string `json:"topic"`
	Payload  string `json:"payload"`
	Encoding string `json:"encoding"`
	Seq      uint64 `json:"seq"`
	Retain   bool   `json:"retain"`
}

func runScenario(t *testing.T, d *deployment) {
	run := fmt.Sprintf("e2e/%d", time.Now().UnixNano())
	js := backboneClient(t, d.NATSURL)

	t.Run("mqtt-qos1-to-sse-ws-mosquitto", func(t *testing.T) {
		topic := run + "/fan/a"
		sse := openSSE(t, d.B.HTTP, "topic="+url.QueryEscape(run+"/fan/#"), "")
		ws := openWS(t, d.B.HTTP, run+"/fan/+")
		mosq := startMosquittoSub(t, d.A.MQTT, run+"/fan/#")

		pub := pahoConnect(t, d.A.MQTT, "pub-"+fmt.Sprint(time.Now().UnixNano()), nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("hello herald")}); err != nil {
			t.Fatalf("publish: %v", err)
		}
		// PUBACK has arrived: the message must already be in the stream.
		stream, err := js.Stream(ctx, "HERALD_dev")
		if err != nil {
			t.Fatalf("tenant stream: %v", err)
		}
		stored, err := stream.GetLastMsgForSubject(ctx, streamSubject(topic))
		if err != nil {
			t.Fatalf("message not in JetStream when PUBACK arrived: %v", err)
		}
		if string(stored.Data) != "hello herald" {
			t.Fatalf("stored payload %q", stored.Data)
		}
		seq := stored.Sequence

		ev := sse.next(t, "message", 10*time.Second)
		pos, err := message.ParsePosition(ev.ID)
		if err != nil || pos.Seq != seq || pos.Epoch == "" {
			t.Fatalf("SSE id %q does not encode stream position %d with an epoch", ev.ID, seq)
		}
		var data sseData
		if err := json.Unmarshal([]byte(ev.Data), &data); err != nil || data.Topic != topic || data.Payload != "hello herald" {
			t.Fatalf("SSE data %q (%v)", ev.Data, err)
		}
		wm := ws.nextMessage(t, 10*time.Second)
		if wm.Topic != topic || wm.Seq != seq || wm.Payload != "hello herald" {
			t.Fatalf("WebSocket message %+v, want seq %d", wm, seq)
		}
		if line := mosq.next(t, 10*time.Second); line != topic+" hello herald" {
			t.Fatalf("mosquitto_sub printed %q", line)
		}
	})

	t.Run("retained-reaches-later-subscriber-on-other-edge", func(t *testing.T) {
		topic := run + "/retained/x"
		pub := pahoConnect(t, d.A.MQTT, "ret-pub", nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte("kept")}); err != nil {
			t.Fatal(err)
		}
		got := make(chan *paho.Publish, 4)
		sub := pahoConnect(t, d.B.MQTT, "ret-sub", func(p *paho.Publish) { got <- p })
		if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: run + "/retained/#", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			if p.Topic != topic || string(p.Payload) != "kept" || !p.Retain {
				t.Fatalf("retained delivery %+v", p)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("retained message not delivered to the later subscriber")
		}
	})

	t.Run("sse-resume-on-other-edge-gap-free", func(t *testing.T) {
		topic := run + "/resume/n"
		filter := url.QueryEscape(run + "/resume/#")
		first := openSSE(t, d.B.HTTP, "topic="+filter, "")
		pub := pahoConnect(t, d.A.MQTT, "resume-pub", nil)
		const total = 300
		var sent atomic.Int64
		published := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for i := 1; i <= total; i++ {
				if _, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(fmt.Sprint(i))}); err != nil {
					published <- err
					return
				}
				sent.Store(int64(i))
				// Paced so that the reconnect below happens mid-stream.
				time.Sleep(3 * time.Millisecond)
			}
			published <- nil
		}()
		// Read a few events, then drop the connection mid-stream.
		var last sseEvent
		for i := 0; i < 20; i++ {
			last = first.next(t, "message", 10*time.Second)
		}
		first.close()
		lastPos, err := message.ParsePosition(last.ID)
		if err != nil {
			t.Fatal(err)
		}
		// Reconnect to the other edge while publishing goes on.
		second := openSSE(t, d.A.HTTP, "topic="+filter, last.ID)
		if n := sent.Load(); n >= total {
			t.Fatalf("publishing had finished (%d sent) before the reconnect: the test proves nothing", n)
		}
		if err := <-published; err != nil {
			t.Fatalf("publisher: %v", err)
		}
		var lastData sseData
		if err := json.Unmarshal([]byte(last.Data), &lastData); err != nil {
			t.Fatal(err)
		}
		next := atoi(t, lastData.Payload) + 1
		prevSeq := lastPos.Seq
		for next <= total {
			ev := second.next(t, "message", 15*time.Second)
			var data sseData
			if err := json.Unmarshal([]byte(ev.Data), &data); err != nil {
				t.Fatal(err)
			}
			pos, err := message.ParsePosition(ev.ID)
			if err != nil {
				t.Fatal(err)
			}
			if n := atoi(t, data.Payload); n != next {
				t.Fatalf("after resume from %s: got message %d, want %d (gap or duplicate)", last.ID, n, next)
			}
			if pos.Seq <= prevSeq {
				t.Fatalf("event id %s not after %d", ev.ID, prevSeq)
			}
			prevSeq = pos.Seq
			next++
		}
		// Then live: one more message arrives once, right after.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(fmt.Sprint(total + 1))}); err != nil {
			t.Fatal(err)
		}
		ev := second.next(t, "message", 10*time.Second)
		var data sseData
		_ = json.Unmarshal([]byte(ev.Data), &data)
		if atoi(t, data.Payload) != total+1 {
			t.Fatalf("live after resume: got %q", data.Payload)
		}
	})

	t.Run("http-publish-reaches-mqtt", func(t *testing.T) {
		topic := run + "/http/x"
		got := make(chan *paho.Publish, 4)
		sub := pahoConnect(t, d.A.MQTT, "http-sub", func(p *paho.Publish) { got <- p })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(d.B.HTTP+"/publish?topic="+url.QueryEscape(topic), "text/plain", strings.NewReader("via http"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /publish: %s %s", resp.Status, body)
		}
		var ack struct {
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(body, &ack); err != nil || ack.Seq == 0 {
			t.Fatalf("publish answer %s", body)
		}
		select {
		case p := <-got:
			if p.Topic != topic || string(p.Payload) != "via http" {
				t.Fatalf("MQTT got %+v", p)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("HTTP publish did not reach the MQTT subscriber")
		}
	})
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("payload %q is not a number", s)
	}
	return n
}

// streamSubject is the backbone subject of a topic in the dev tenant (plain
// topics need no escaping).
func streamSubject(topic string) string {
	return "herald.in.dev." + strings.ReplaceAll(topic, "/", ".")
}

func backboneClient(t *testing.T, natsURL string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// pahoConnect connects an Eclipse Paho MQTT 5 client; onPublish receives messages.
func pahoConnect(t *testing.T, addr, clientID string, onPublish func(*paho.Publish)) *paho.Client {
	t.Helper()
	conn, err := (&netDialer{}).dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := paho.ClientConfig{Conn: conn}
	if onPublish != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { onPublish(pr.Packet); return true, nil },
		}
	}
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: clientID + fmt.Sprint(time.Now().UnixNano()), CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("paho connect to %s: %v", addr, err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("CONNACK reason %#x", ca.ReasonCode)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{ReasonCode: 0}) })
	return c
}

// mosquittoSub is a running mosquitto_sub printing "topic payload" lines.
type mosquittoSub struct{ lines chan string }

func startMosquittoSub(t *testing.T, addr, filter string) *mosquittoSub {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Fatal("mosquitto_sub missing: run `make test-deps` (make test does)")
	}
	// stdbuf: mosquitto_sub's stdout is block-buffered on a pipe.
	cmd := exec.Command("stdbuf", "-oL", "mosquitto_sub", "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-t", filter, "-v", "-d")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	m := &mosquittoSub{lines: make(chan string, 64)}
	subscribed := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.Contains(line, "received SUBACK"):
				if !once {
					close(subscribed)
					once = true
				}
			case strings.HasPrefix(line, "Client ") || strings.HasPrefix(line, "Subscribed"):
				// debug output
			default:
				m.lines <- line
			}
		}
		close(m.lines)
	}()
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		t.Fatal("mosquitto_sub got no SUBACK within 10s")
	}
	return m
}

func (m *mosquittoSub) next(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-m.lines:
		if !ok {
			t.Fatal("mosquitto_sub exited")
		}
		return l
	case <-time.After(timeout):
		t.Fatalf("mosquitto_sub printed nothing within %s", timeout)
	}
	return ""
}

// wsClient speaks Herald's native WebSocket protocol.
type wsClient struct {
	conn *websocket.Conn
	msgs chan wsMessage
}

type wsMessage struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Topic   string `json:"topic"`
	Payload string `json:"payload"`
	Seq     uint64 `json:"seq"`
	Code    string `json:"code"`
}

func openWS(t *testing.T, base, filter string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.CloseNow() })
	c := &wsClient{conn: conn, msgs: make(chan wsMessage, 256)}
	go func() {
		defer close(c.msgs)
		for {
			var m wsMessage
			if err := wsjson.Read(context.Background(), conn, &m); err != nil {
				return
			}
			c.msgs <- m
		}
	}()
	if err := wsjson.Write(ctx, conn, map[string]any{"op": "subscribe", "id": "s1", "topic": filter}); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case m := <-c.msgs:
			if m.Type == "ack" && m.ID == "s1" {
				return c
			}
			if m.Type == "error" {
				t.Fatalf("WebSocket subscribe refused: %+v", m)
			}
		case <-ctx.Done():
			t.Fatal("WebSocket subscribe not acknowledged within 10s")
		}
	}
}

func (c *wsClient) nextMessage(t *testing.T, timeout time.Duration) wsMessage {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				t.Fatal("WebSocket closed")
			}
			if m.Type == "message" {
				return m
			}
		case <-deadline:
			t.Fatalf("no WebSocket message within %s", timeout)
		}
	}
}
