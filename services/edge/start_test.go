package edge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/heraldmq/herald/services/edge"
)

// publishHTTP publishes payload to topic through POST /publish and returns
// the stored position.
func publishHTTP(t *testing.T, base, topic, payload string, retain bool) string {
	t.Helper()
	u := base + "/publish?topic=" + topic
	if retain {
		u += "&retain=1"
	}
	resp, err := http.Post(u, "application/octet-stream", strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct {
		Position string `json:"position"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("publish %s: %d %v", topic, resp.StatusCode, err)
	}
	return ans.Position
}

// sseEvent is one SSE event: its fields as sent, data decoded.
type sseEvent struct {
	id, name string
	hasID    bool
	data     struct {
		Topic   string `json:"topic"`
		Payload string `json:"payload"`
		Retain  bool   `json:"retain"`
	}
}

// sseEvents opens an SSE stream on query with client (nil: the default)
// and returns a function reading its next event (comments and the retry
// field skipped).
func sseEvents(t *testing.T, ctx context.Context, client *http.Client, base, query string) func() sseEvent {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?"+query, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("sse %s: %d %s", query, resp.StatusCode, b)
	}
	r := bufio.NewReader(resp.Body)
	return func() sseEvent {
		t.Helper()
		var ev sseEvent
		fields := 0
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("sse %s: %v", query, err)
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if fields > 0 {
					return ev
				}
			case strings.HasPrefix(line, "id: "):
				ev.id, ev.hasID = strings.TrimPrefix(line, "id: "), true
				fields++
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
				fields++
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data); err != nil {
					t.Fatal(err)
				}
				fields++
			}
		}
	}
}

// wsFrame is a server frame of the WebSocket protocol.
type wsFrame struct {
	Type     string `json:"type"`
	Topic    string `json:"topic"`
	Payload  string `json:"payload"`
	Retain   bool   `json:"retain"`
	Position string `json:"position"`
	Code     string `json:"code"`
}

// wsSubscribe connects to /ws, sends the subscribe frame sub and returns
// the connection once it is acknowledged.
func wsSubscribe(t *testing.T, ctx context.Context, base string, sub map[string]any) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	sub["op"], sub["id"] = "subscribe", "s"
	if err := wsjson.Write(ctx, c, sub); err != nil {
		t.Fatal(err)
	}
	if f := wsRead(t, ctx, c); f.Type != "ack" {
		t.Fatalf("subscribe %v answered %+v", sub, f)
	}
	return c
}

func wsRead(t *testing.T, ctx context.Context, c *websocket.Conn) wsFrame {
	t.Helper()
	var f wsFrame
	if err := wsjson.Read(ctx, c, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// pollAnswer is the answer of GET /poll.
type pollAnswer struct {
	Messages []struct {
		Topic    string `json:"topic"`
		Payload  string `json:"payload"`
		Position string `json:"position"`
	} `json:"messages"`
	Cursor string `json:"cursor"`
}

func poll(t *testing.T, base, query string) pollAnswer {
	t.Helper()
	resp, err := http.Get(base + "/poll?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a pollAnswer
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("poll %s: %d %s", query, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestRetainedStartOnEveryTransport ensures a subscriber on SSE, the
// WebSocket protocol and long-poll that asks for retained messages first
// gets the retained message of each topic its wildcard matches (the
// latest, without a position a resume would replay history from), then
// the live ones, none twice — on a real JetStream backbone, the session
// service's lag covered by the stream's tail.
func TestRetainedStartOnEveryTransport(t *testing.T) {
	_, _, base := startServer(t, edge.Config{AnonymousTenant: "dev"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	publishHTTP(t, base, "sensors/a", "a-old", true)
	publishHTTP(t, base, "sensors/a", "a", true)
	publishHTTP(t, base, "sensors/b", "b", true)
	publishHTTP(t, base, "sensors/c", "not retained", false)
	publishHTTP(t, base, "other/x", "x", true)

	next := sseEvents(t, ctx, nil, base, "topic=sensors/%23&retained=true")
	c := wsSubscribe(t, ctx, base, map[string]any{"topic": "sensors/#", "retained": true})
	first := poll(t, base, "topic=sensors/%23&retained=true")

	for _, want := range []string{"a", "b"} {
		if ev := next(); ev.hasID || ev.data.Payload != want || !ev.data.Retain {
			t.Fatalf("sse: retained event %+v, want %q retained without id", ev, want)
		}
		if f := wsRead(t, ctx, c); f.Type != "message" || f.Payload != want || !f.Retain || f.Position != "" {
			t.Fatalf("ws: retained frame %+v, want %q retained without position", f, want)
		}
	}
	if ev := next(); !ev.hasID || ev.name != "" || ev.id == "" {
		t.Fatalf("sse: after the retained events %+v, want an event with only the stream's end as id", ev)
	}
	if got := len(first.Messages); got != 2 || first.Messages[0].Payload != "a" || first.Messages[1].Payload != "b" ||
		first.Messages[0].Position != "" {
		t.Fatalf("poll: %+v, want the retained a and b without positions", first)
	}

	live := publishHTTP(t, base, "sensors/b", "b-live", false)
	if ev := next(); ev.id != live || ev.data.Payload != "b-live" {
		t.Fatalf("sse: live event %+v, want b-live at %s", ev, live)
	}
	if f := wsRead(t, ctx, c); f.Payload != "b-live" || f.Position != live {
		t.Fatalf("ws: live frame %+v, want b-live at %s", f, live)
	}
	if a := poll(t, base, "topic=sensors/%23&timeout=10&cursor="+first.Cursor); len(a.Messages) != 1 || a.Messages[0].Payload != "b-live" {
		t.Fatalf("poll from the retained start's cursor: %+v, want b-live alone", a)
	}
}

// TestRewindStartOnEveryTransport ensures a subscriber on SSE, the
// WebSocket protocol and long-poll that asks for a rewind — the last N
// messages, or those of the last T — gets exactly those, in order, with
// their positions, then the live ones, none twice.
func TestRewindStartOnEveryTransport(t *testing.T) {
	_, _, base := startServer(t, edge.Config{AnonymousTenant: "dev"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pos := map[string]string{}
	for i := range 8 {
		p := fmt.Sprint("m", i)
		pos[p] = publishHTTP(t, base, "log/x", p, false)
		publishHTTP(t, base, "noise", "n", false)
	}
	next3 := sseEvents(t, ctx, nil, base, "topic=log/%23&rewind=3")
	nextT := sseEvents(t, ctx, nil, base, "topic=log/%23&rewind=10m")
	c3 := wsSubscribe(t, ctx, base, map[string]any{"topic": "log/#", "rewind": 3})
	cT := wsSubscribe(t, ctx, base, map[string]any{"topic": "log/#", "rewind": "10m"})
	first := poll(t, base, "topic=log/%23&rewind=3")

	check := func(from int) {
		t.Helper()
		for i := from; i < 8; i++ {
			want := fmt.Sprint("m", i)
			if ev := next3(); from == 5 && (ev.data.Payload != want || ev.id != pos[want]) {
				t.Fatalf("sse rewind=3: %+v, want %s at %s", ev, want, pos[want])
			}
			if f := wsRead(t, ctx, c3); from == 5 && (f.Payload != want || f.Position != pos[want]) {
				t.Fatalf("ws rewind 3: %+v, want %s at %s", f, want, pos[want])
			}
		}
	}
	check(5)
	for i := range 8 {
		want := fmt.Sprint("m", i)
		if ev := nextT(); ev.data.Payload != want || ev.id != pos[want] {
			t.Fatalf("sse rewind=10m: %+v, want %s at %s", ev, want, pos[want])
		}
		if f := wsRead(t, ctx, cT); f.Payload != want || f.Position != pos[want] {
			t.Fatalf("ws rewind 10m: %+v, want %s at %s", f, want, pos[want])
		}
	}
	if len(first.Messages) != 3 || first.Messages[0].Payload != "m5" || first.Messages[2].Position != pos["m7"] {
		t.Fatalf("poll rewind=3: %+v, want m5…m7", first)
	}

	live := publishHTTP(t, base, "log/x", "live", false)
	for name, next := range map[string]func() sseEvent{"3": next3, "10m": nextT} {
		if ev := next(); ev.id != live || ev.data.Payload != "live" {
			t.Fatalf("sse rewind=%s: after the rewind %+v, want live at %s", name, ev, live)
		}
	}
	for _, c := range []*websocket.Conn{c3, cT} {
		if f := wsRead(t, ctx, c); f.Payload != "live" || f.Position != live {
			t.Fatalf("ws: after the rewind %+v, want live at %s", f, live)
		}
	}
	if a := poll(t, base, "topic=log/%23&timeout=10&cursor="+first.Cursor); len(a.Messages) != 1 || a.Messages[0].Payload != "live" {
		t.Fatalf("poll from the rewind's cursor: %+v, want live alone", a)
	}
}

// TestStartRefused ensures a start that is not one, or one beside a
// resume position, is refused as a bad request on every transport.
func TestStartRefused(t *testing.T) {
	_, _, base := startServer(t, edge.Config{AnonymousTenant: "dev"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bad := []string{"rewind=0", "rewind=soon", "retained=maybe", "retained=true&rewind=3"}
	for path, resume := range map[string]string{"/sse": "lastEventId", "/poll": "cursor"} {
		for _, q := range append(bad, "rewind=3&"+resume+"=x-1", "retained=true&"+resume+"=x-1") {
			// A stream that opens is a failure, not a hang: bounded.
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(base + path + "?topic=a&" + q)
			if err != nil {
				t.Fatal(err)
			}
			var b []byte
			if resp.StatusCode != http.StatusOK {
				b, _ = io.ReadAll(resp.Body)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"bad_request"`) {
				t.Errorf("%s?%s: %d %s, want 400 bad_request", path, q, resp.StatusCode, b)
			}
		}
	}
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for _, sub := range []map[string]any{{"rewind": 0}, {"rewind": "soon"}, {"retained": true, "rewind": 2},
		{"rewind": 2, "from": "x-1"}} {
		sub["op"], sub["id"], sub["topic"] = "subscribe", "s", "a"
		if err := wsjson.Write(ctx, c, sub); err != nil {
			t.Fatal(err)
		}
		if f := wsRead(t, ctx, c); f.Type != "error" || f.Code != "bad_request" {
			t.Errorf("ws subscribe %v: %+v, want error bad_request", sub, f)
		}
	}
}
