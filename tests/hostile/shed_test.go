package hostile

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestLoadShedding ensures an edge at its connection bound (a herald run
// with --max-connections 2) refuses every new connection with its
// protocol's "server busy" answer — MQTT 5 CONNACK 0x89, MQTT 3.1.1 return
// code 3, SSE and poll 503 with Retry-After and a JSON body, WebSocket
// close 1013 — and admits again once a connection leaves.
func TestLoadShedding(t *testing.T) {
	dir := t.TempDir()
	h, err := startHerald(dir, "HERALD_MAX_CONNECTIONS=2", "HERALD_ANONYMOUS_TENANT=dev")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			h.dump(os.Stderr)
		}
	})
	var held []*mqttConn
	for i := range 2 {
		c, err := connectV5(h.MQTT, "held"+strconv.Itoa(i), "", "", nil)
		if err != nil || c.code != 0 {
			t.Fatalf("connection %d under the bound: %v, %v", i, c, err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()

	t.Run("MQTT 5: CONNACK 0x89", func(t *testing.T) {
		c, err := connectV5(h.MQTT, "busy5", "", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.code != 0x89 {
			t.Fatalf("CONNACK %#x, want 0x89", c.code)
		}
		mustClose(t, c)
	})
	t.Run("MQTT 3.1.1: return code 3", func(t *testing.T) {
		c, err := connectV3(h.MQTT, "", "busy3", "")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.code != 0x03 {
			t.Fatalf("return code %#x, want 3", c.code)
		}
	})
	for _, path := range []string{"/sse?topic=a", "/poll?topic=a&timeout=1"} {
		t.Run("HTTP "+strings.Split(path, "?")[0]+": 503, Retry-After, JSON", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			status, hdr, body, err := httpGet(ctx, http.DefaultClient, h.HTTP+path, "")
			if err != nil {
				t.Fatal(err)
			}
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			_ = json.Unmarshal([]byte(body), &e)
			if status != http.StatusServiceUnavailable || e.Error.Code != "server_busy" {
				t.Fatalf("%d %s, want 503 server_busy", status, body)
			}
			if s, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || s <= 0 {
				t.Fatalf("Retry-After %q", hdr.Get("Retry-After"))
			}
		})
	}
	t.Run("WebSocket: close 1013", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(h.HTTP, "http")+"/ws", nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.CloseNow()
		if code := wsCloseCode(ctx, c); code != websocket.StatusTryAgainLater {
			t.Fatalf("close %v, want 1013", code)
		}
	})
	t.Run("a slot freed is taken again", func(t *testing.T) {
		held[0].Close()
		held = held[1:]
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, err := connectV5(h.MQTT, "again", "", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.code == 0 {
				held = append(held, c)
				return
			}
			c.Close()
			if c.code != 0x89 || time.Now().After(deadline) {
				t.Fatalf("CONNACK %#x after a connection left", c.code)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
