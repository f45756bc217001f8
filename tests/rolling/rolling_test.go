// Package rolling checks that a rolling restart of the edges loses nothing:
// each edge in turn gets SIGTERM, drains (its clients asked to leave over
// time, MQTT sessions saved) and is started again, under steady publishing,
// while persistent MQTT subscribers and SSE clients move to the other edge.
package rolling

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/tests/localcluster"
	"github.com/heraldmq/herald/tests/mqttload"
	"github.com/heraldmq/herald/tests/ssestream"
)

const (
	// drainTimeout is the edges' --drain-timeout: clients leave over its
	// first half.
	drainTimeout = 6 * time.Second
	subscribers  = 6
	sseClients   = 4
	// publishEvery paces the publisher: 100 messages a second.
	publishEvery = 10 * time.Millisecond
	topicPrefix  = "roll/"
)

// departures records when clients lost their connection, per edge drain.
type departures struct {
	mu    sync.Mutex
	times []time.Time
}

func (d *departures) add(t time.Time) {
	d.mu.Lock()
	d.times = append(d.times, t)
	d.mu.Unlock()
}

// within returns the departures in [from, to].
func (d *departures) within(from, to time.Time) []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []time.Time
	for _, t := range d.times {
		if !t.Before(from) && !t.After(to) {
			out = append(out, t)
		}
	}
	return out
}

// TestRollingRestart ensures that restarting both edges one after the
// other (SIGTERM, drain, start, ready) under 100 QoS 1 messages a second
// loses nothing: every persistent QoS 1 subscriber gets every message
// (duplicates allowed), every SSE client gets exactly the stream's
// messages in order, and the clients leave each edge spread over time.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local cluster")
	}
	start := time.Now()
	c, err := localcluster.Start(t.TempDir(), "HERALD_DRAIN_TIMEOUT="+drainTimeout.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs(os.Stderr)
		}
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	edges := []localcluster.Edge{c.A, c.B}
	var left, leftMQTT, leftSSE departures

	subs := make([]*mqttload.Subscriber, subscribers)
	for i := range subs {
		// Half prefer each edge; each moves to the other when its edge leaves.
		cfg := mqttConfig(fmt.Sprintf("roller-%d", i), edges[i%2], edges[(i+1)%2])
		cfg.OnConnectionDown = func() bool {
			now := time.Now()
			left.add(now)
			leftMQTT.add(now)
			return true
		}
		subs[i] = mqttload.NewSubscriber(ctx, t, cfg, topicPrefix+"#")
	}
	sses := make([]*sseClient, sseClients)
	for i := range sses {
		sses[i] = newSSEClient(ctx, edges[i%2], edges[(i+1)%2], &left, &leftSSE)
		t.Cleanup(func() { <-sses[i].done }) // after cancel
	}
	for _, s := range sses {
		s.waitOpen(t, ctx)
	}
	pub := mqttload.NewPublisher(ctx, t, mqttConfig("roll-publisher", edges[0], edges[1]),
		func(i int) string { return topicPrefix + strconv.Itoa(i%8) }, publishEvery)

	time.Sleep(time.Second)
	for _, e := range edges {
		name := e.ID
		t0 := time.Now()
		if err := c.Terminate(name, drainTimeout+10*time.Second); err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		if err := c.Restart(name); err != nil {
			t.Fatal(err)
		}
		waitReady(t, ctx, e)
		ts := left.within(t0, t1)
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		if len(ts) < 2 {
			t.Fatalf("%s: %d clients left it while it drained, want several", name, len(ts))
		}
		spreadOver := ts[len(ts)-1].Sub(ts[0])
		t.Logf("%s: drained in %v; %d clients (%d MQTT, %d SSE) left over %v (first %v, last %v after SIGTERM); ready again after %v",
			name, t1.Sub(t0).Round(time.Millisecond), len(ts), len(leftMQTT.within(t0, t1)), len(leftSSE.within(t0, t1)),
			spreadOver.Round(time.Millisecond),
			ts[0].Sub(t0).Round(time.Millisecond), ts[len(ts)-1].Sub(t0).Round(time.Millisecond),
			time.Since(t1).Round(time.Millisecond))
		if spreadOver <= 100*time.Millisecond {
			t.Errorf("%s: all %d clients left within %v: not spread", name, len(ts), spreadOver)
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Second)
	sent, retries := pub.Stop()
	t.Logf("published %d messages (acknowledged), %d publish retries", len(sent), retries)

	for _, s := range subs {
		missing := s.WaitAll(ctx, sent, 5*time.Second)
		if len(missing) > 0 {
			t.Errorf("MQTT subscriber %s: %d of %d messages missing (first %v); %d received, %d sessions not present on reconnect",
				s.ID, len(missing), len(sent), missing[:min(5, len(missing))], s.Count(), s.LostSessions())
		} else if s.LostSessions() > 0 {
			t.Errorf("MQTT subscriber %s: session not present on %d reconnects", s.ID, s.LostSessions())
		}
	}
	for i, s := range sses {
		if err := s.check(ctx, sent); err != nil {
			t.Errorf("SSE client %d: %v", i, err)
		}
	}
	t.Logf("each of %d MQTT subscribers and %d SSE clients received all %d messages", len(subs), len(sses), len(sent))
	if d := time.Since(start); d > 2*time.Minute {
		t.Errorf("took %v, the bound is 2 minutes", d)
	} else {
		t.Logf("took %v", d.Round(time.Millisecond))
	}
}

// waitReady waits until the edge's /readyz answers 200.
func waitReady(t *testing.T, ctx context.Context, e localcluster.Edge) {
	t.Helper()
	for {
		resp, err := http.Get(e.Ops + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s not ready: %v", e.ID, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func mqttURLs(edges ...localcluster.Edge) []*url.URL {
	var us []*url.URL
	for _, e := range edges {
		us = append(us, &url.URL{Scheme: "mqtt", Host: e.MQTT})
	}
	return us
}

// mqttConfig connects to prefer, then other, with a persistent session.
func mqttConfig(id string, prefer, other localcluster.Edge) autopaho.ClientConfig {
	return autopaho.ClientConfig{
		ServerUrls: mqttURLs(prefer, other), KeepAlive: 30, CleanStartOnInitialConnection: true,
		SessionExpiryInterval: 300, ReconnectBackoff: mqttload.ReconnectSoon, ConnectTimeout: 5 * time.Second,
		ClientConfig: paho.ClientConfig{ClientID: id},
	}
}

// sseClient follows roll/# over SSE as EventSource does: on the end of the
// stream it waits the last retry: delay and reconnects with Last-Event-ID,
// to its preferred edge or, refused, to the other.
type sseClient struct {
	edges []localcluster.Edge
	open  chan struct{}
	done  chan struct{}

	log ssestream.Log
}

func newSSEClient(ctx context.Context, prefer, other localcluster.Edge, left ...*departures) *sseClient {
	s := &sseClient{edges: []localcluster.Edge{prefer, other}, open: make(chan struct{}), done: make(chan struct{})}
	go s.run(ctx, left)
	return s
}

func (s *sseClient) waitOpen(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-s.open:
	case <-ctx.Done():
		t.Fatal("SSE stream not open")
	}
}

func (s *sseClient) run(ctx context.Context, left []*departures) {
	defer close(s.done)
	lastID, retry := "", 2*time.Second
	opened := false
	for ctx.Err() == nil {
		for _, e := range s.edges {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.HTTP+"/sse?topic="+url.QueryEscape(topicPrefix+"#"), nil)
			if lastID != "" {
				req.Header.Set("Last-Event-ID", lastID)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue
			}
			if resp.StatusCode != http.StatusOK {
				resp.Body.Close()
				continue
			}
			if !opened {
				opened = true
				close(s.open)
			}
			lastID, retry = ssestream.Read(resp.Body, lastID, retry, s.log.Add, s.log.Fail)
			resp.Body.Close()
			if ctx.Err() == nil {
				now := time.Now()
				for _, l := range left {
					l.add(now)
				}
			}
			break
		}
		select {
		case <-time.After(retry):
		case <-ctx.Done():
		}
	}
}

// check waits until the client has every message of sent, then requires
// exactly the stream.
func (s *sseClient) check(ctx context.Context, sent []string) error {
	return s.log.Wait(ctx, sent, 10*time.Second)
}
