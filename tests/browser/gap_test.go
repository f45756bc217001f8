package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestReplayWindowGap ensures, on the cluster path (session service, Redis
// replay buffer, JetStream), that a resume from a position the Redis
// buffer has trimmed and the stream has purged gets the explicit gap
// signal first — SSE gap event, WebSocket gap frame, poll gap flag — then
// what is left, while a resume inside the buffer's window is served from
// Redis without a gap although the stream lost those messages too.
func TestReplayWindowGap(t *testing.T) {
	// A replay buffer of 5 messages: after 20, it holds 16..20.
	c := startCluster(t, "HERALD_REPLAY_MAX_MESSAGES=5", "HERALD_SESSION_POLL_INTERVAL=100ms")
	topic := fmt.Sprintf("gap%d/t", time.Now().UnixNano())
	msgs := make([]map[string]any, 20)
	for i := range msgs {
		msgs[i] = map[string]any{"topic": topic, "payload": fmt.Sprint(i + 1), "qos": 1}
	}
	pos := publishBatch(t, c.A.HTTP, msgs) // pos[i] is message i+1's position

	nc, err := nats.Connect(c.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, "HERALD_dev")
	if err != nil {
		t.Fatal(err)
	}
	last := stream.CachedInfo().State.LastSeq
	// The session service acks a batch once applied to Redis: wait until
	// all of it is, before the stream loses it.
	for {
		var applied uint64
		cons, err := stream.Consumer(ctx, "herald-session") // created once the service finds the tenant
		if err == nil {
			info, err := cons.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			applied = info.AckFloor.Stream
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Fatal(err)
		}
		if applied >= last {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the session service applied only up to %d of %d", applied, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The stream keeps the last two only.
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(last-1)); err != nil {
		t.Fatal(err)
	}
	filter := url.QueryEscape(topic)

	t.Run("sse-inside-redis-window", func(t *testing.T) {
		s, err := openSSE(ctx, c.B.HTTP, "topic="+filter, pos[15])
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		for _, want := range pos[16:] { // 17 and 18 exist only in Redis now
			if ev := next(t, s); ev.Event != "message" || ev.ID != want {
				t.Fatalf("got %+v, want message %s", ev, want)
			}
		}
	})

	t.Run("sse-too-old", func(t *testing.T) {
		s, err := openSSE(ctx, c.A.HTTP, "topic="+filter, pos[2])
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		ev := next(t, s)
		var g struct {
			From         string `json:"from"`
			EpochChanged bool   `json:"epoch_changed"`
		}
		if ev.Event != "gap" || ev.ID != "" || json.Unmarshal([]byte(ev.Data), &g) != nil || g.From != pos[2] || g.EpochChanged {
			t.Fatalf("first event %+v, want a gap from %s", ev, pos[2])
		}
		for _, want := range pos[18:] {
			if ev := next(t, s); ev.Event != "message" || ev.ID != want {
				t.Fatalf("got %+v, want message %s", ev, want)
			}
		}
	})

	t.Run("websocket-too-old", func(t *testing.T) {
		conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(c.B.HTTP, "http")+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.CloseNow()
		if err := wsjson.Write(ctx, conn, map[string]string{"op": "subscribe", "id": "1", "topic": topic, "from": pos[2]}); err != nil {
			t.Fatal(err)
		}
		var frames []map[string]any
		for len(frames) < 4 {
			var f map[string]any
			if err := wsjson.Read(ctx, conn, &f); err != nil {
				t.Fatal(err)
			}
			frames = append(frames, f)
		}
		if frames[0]["type"] != "ack" || frames[1]["type"] != "gap" || frames[1]["from"] != pos[2] ||
			frames[2]["position"] != pos[18] || frames[3]["position"] != pos[19] {
			t.Fatalf("frames %v, want ack, gap from %s, %s, %s", frames, pos[2], pos[18], pos[19])
		}
	})

	t.Run("poll-too-old", func(t *testing.T) {
		resp, err := http.Get(c.A.HTTP + "/poll?timeout=0&topic=" + filter + "&cursor=" + url.QueryEscape(pos[2]))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct {
			Messages []struct {
				Position string `json:"position"`
			} `json:"messages"`
			Cursor string `json:"cursor"`
			Gap    bool   `json:"gap"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || !r.Gap || len(r.Messages) != 2 ||
			r.Messages[0].Position != pos[18] || r.Cursor != pos[19] {
			t.Fatalf("poll: %+v (%v)", r, err)
		}
	})
}

// next returns the next event of s.
func next(t *testing.T, s *sseStream) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return sseEvent{}
}
