package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// wsFrame is a server frame of the native WebSocket protocol.
type wsFrame struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Seq  uint64 `json:"seq"`
}

// dialWS connects to edge e and subscribes to filter.
func dialWS(t *testing.T, ctx context.Context, e edge, filter string) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.HTTP, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = conn.CloseNow() })
	if err := wsjson.Write(ctx, conn, map[string]string{"op": "subscribe", "id": "s", "topic": filter}); err != nil {
		t.Fatal(err)
	}
	var f wsFrame
	if err := wsjson.Read(ctx, conn, &f); err != nil || f.Type != "ack" || f.ID != "s" {
		t.Fatalf("subscribe: %+v %v", f, err)
	}
	return conn
}

// TestSlowWebSocketConsumerMemory ensures a WebSocket client that stops
// reading does not grow its edge's memory with what it is sent: while 50,000
// messages of 1 KiB flow to its subscription, the edge's RSS stays within
// its queue bound plus slack, the slow client is closed as a slow consumer
// (1013), and another client on the same edge receives every message in
// order meanwhile.
func TestSlowWebSocketConsumerMemory(t *testing.T) {
	c := startCluster(t)
	const (
		total     = 50000
		batch     = 500
		size      = 1024
		queueSize = 1024 // the edge's default ws queue_size
	)
	run := fmt.Sprintf("slow%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	slow := dialWS(t, ctx, c.A, run+"/#") // never read until the end
	fast := dialWS(t, ctx, c.A, run+"/#")
	var fastGot atomic.Int64
	fastDone := make(chan error, 1)
	go func() {
		var prev uint64
		for n := 0; n < total; {
			_, b, err := fast.Read(ctx)
			if err != nil {
				fastDone <- fmt.Errorf("after %d messages: %w", n, err)
				return
			}
			var f wsFrame
			if err := json.Unmarshal(b, &f); err != nil {
				fastDone <- err
				return
			}
			if f.Type != "message" || (prev != 0 && f.Seq != prev+1) {
				fastDone <- fmt.Errorf("after seq %d got %s", prev, b[:min(len(b), 120)])
				return
			}
			prev = f.Seq
			n++
			fastGot.Store(int64(n))
		}
		fastDone <- nil
	}()

	pid := c.pid(t, c.A.Name)
	base := rss(t, pid)
	var peak atomic.Int64
	peak.Store(base)
	sampled := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				if r := rss(t, pid); r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()

	// Publish through edge B, so that edge A's memory is about delivery.
	payload := strings.Repeat("x", size)
	start := time.Now()
	for i := 0; i < total; i += batch {
		msgs := make([]map[string]any, batch)
		for j := range msgs {
			msgs[j] = map[string]any{"topic": run + "/t", "payload": payload}
		}
		publishBatch(t, c.B.HTTP, msgs)
	}
	published := time.Since(start)
	if err := <-fastDone; err != nil {
		t.Fatalf("the reading client on the same edge: %v", err)
	}
	delivered := time.Since(start)
	close(stopSampling)
	<-sampled
	after := rss(t, pid)

	// The slow client now reads what the kernel buffered for it, then
	// finds its connection closed: with 1013 if the close frame still fit
	// in its socket buffers, else abruptly (the edge could not write it).
	var slowGot int
	var closeErr error
	for {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		_, _, err := slow.Read(rctx)
		rcancel()
		if err != nil {
			closeErr = err
			break
		}
		slowGot++
	}
	status := websocket.CloseStatus(closeErr)
	logged := false // the edge's word that it closed the client with 1013
	for _, line := range strings.Split(c.log(t, c.A.Name), "\n") {
		logged = logged || (strings.Contains(line, `"msg":"ws: slow consumer, closing"`) && strings.Contains(line, `"code":1013`))
	}

	// What the edge may hold for the slow client: its queue, plus the batch
	// its writer took out of it; plus the live messages that may wait
	// behind the dispatcher while it waits for room in the slow client's
	// full feed before judging it slow (backpressure: at most liveBacklog,
	// node's backlogStall, since edge B's publishers are not slowed by edge
	// A). Each message four times its payload: the received copy, the
	// decoded message, its frame, and the garbage collector's headroom
	// (GOGC=100 lets the heap double). The rest is runtime headroom, far
	// below the 50 MiB that went through (and the 189 MiB an edge grew by
	// when its dispatcher waited a whole SlowAfter).
	const liveBacklog = 16384
	perMessage := int64(size) * 4
	bound := (2*queueSize+liveBacklog)*perMessage + 24<<20
	growth := peak.Load() - base
	t.Logf("edge A RSS: before %.1f MiB, peak %.1f MiB (+%.1f MiB), after %.1f MiB; bound +%.1f MiB; %d × %d B published in %s, all delivered to the reading client in %s; slow client read %d messages then %v (close status %d), edge logged the slow consumer: %v",
		mib(base), mib(peak.Load()), mib(growth), mib(after), mib(bound), total, size,
		published.Round(time.Millisecond), delivered.Round(time.Millisecond), slowGot, closeErr, status, logged)
	if growth > bound {
		t.Fatalf("edge RSS grew by %.1f MiB, over the bound of %.1f MiB", mib(growth), mib(bound))
	}
	if !logged || (status != websocket.StatusTryAgainLater && status != -1) || slowGot >= total {
		t.Fatalf("the slow client was not closed as a slow consumer: logged %v, status %d, %d of %d messages read", logged, status, slowGot, total)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
