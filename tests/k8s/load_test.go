package k8s

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/tests/ssestream"
)

const (
	loadSubscribers = 4
	loadSSEClients  = 3
	// loadEvery paces the publisher: 50 QoS 1 messages a second.
	loadEvery = 20 * time.Millisecond
	// loadTenant's stream carries only this test's messages, so an SSE
	// client's sequence numbers must follow each other one by one.
	loadTenant = "roll"
	loadTopics = "roll/"
)

// endpoint is how the host's clients reach the edges: through the
// release's NodePort Services, over TLS, with a tenant API key.
type endpoint struct {
	mqtt, https string // host:port
	tls         *tls.Config
	token       string
}

// testUpgradeUnderLoad keeps MQTT subscribers, SSE clients and a QoS 1
// publisher on the edges, through their Services, while helm upgrade
// replaces every edge pod; then every subscriber must have every
// acknowledged message and every SSE client exactly the stream.
func testUpgradeUnderLoad(t *testing.T, c *cluster, ns, work string, pki *testPKI, values []string) {
	out := c.must(t, work, "bash", "-euo", "pipefail", "-c", `
kubectl -n messaging port-forward svc/herald-admin 18081:8081 >/dev/null 2>&1 & PF=$!
trap 'kill $PF' EXIT
export HERALD_ADMIN_SERVER=127.0.0.1:18081 HERALD_ADMIN_TOKEN="$(sed -n 's/^token: *//p' operator-token.txt)"
for i in $(seq 30); do bin/herald-admin tenant list >/dev/null 2>&1 && break; sleep 1; done
bin/herald-admin tenant create `+loadTenant+` >/dev/null
bin/herald-admin key create `+loadTenant+` -c 'publish,subscribe,history:`+loadTopics+`#' -o json`)
	token := regexp.MustCompile(`"token": *"(hk_[^"]+)"`).FindStringSubmatch(out)
	if token == nil {
		t.Fatalf("no API key for tenant %s:\n%s", loadTenant, out)
	}
	ep := endpoint{
		mqtt:  c.nodePort(t, ns, "herald-mqtt", "mqtts"),
		https: c.nodePort(t, ns, "herald-http", "http"),
		tls:   &tls.Config{RootCAs: pki.pool, ServerName: "realtime.example.com", MinVersion: tls.VersionTLS12},
		token: token[1],
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The edges learn the key from etcd: wait until they take it, once a
	// second, as a failed attempt counts against this address's budget of
	// authentication failures (one a second), which the clients' fast
	// reconnects would spend.
	waitKeyKnown(ctx, t, ep)

	subs := make([]*subscriber, loadSubscribers)
	for i := range subs {
		subs[i] = newSubscriber(ctx, t, ep, fmt.Sprintf("k8s-sub-%d", i))
	}
	sses := make([]*sseClient, loadSSEClients)
	for i := range sses {
		sses[i] = newSSEClient(ctx, ep)
		t.Cleanup(func() { <-sses[i].done }) // after cancel
	}
	for _, s := range sses {
		select {
		case <-s.open:
		case <-ctx.Done():
			t.Fatal("SSE stream not open")
		}
	}
	pub := newPublisher(ctx, t, ep)
	time.Sleep(2 * time.Second)

	before, _ := c.edgePods(t, ns)
	if len(before) == 0 {
		t.Fatal("no edge pods")
	}
	t0 := time.Now()
	args := append([]string{"upgrade", "herald", "charts/herald", "-n", ns, "--wait", "--timeout", "8m"}, values...)
	c.must(t, "", "helm", append(args, "--set-string", "edge.podAnnotations.herald-k8s-test/rolled="+strconv.FormatInt(time.Now().Unix(), 10))...)
	// helm's wait ends when the new edges are ready; the old ones are still
	// draining their clients: keep publishing until they are gone.
	var after []string
	for {
		live, terminating := c.edgePods(t, ns)
		old := 0
		for _, p := range append(live, terminating...) {
			if slices.Contains(before, p) {
				old++
			}
		}
		if old == 0 {
			after = live
			break
		}
		if time.Since(t0) > 3*time.Minute {
			t.Fatalf("old edges still there 3 minutes after the upgrade began: before %v, now %v and terminating %v", before, live, terminating)
		}
		time.Sleep(time.Second)
	}
	t.Logf("helm upgrade replaced edges %v by %v; the old ones gone after %v", before, after, time.Since(t0).Round(100*time.Millisecond))
	time.Sleep(2 * time.Second)
	sent := pub.stop()
	if len(sent) < 100 {
		t.Fatalf("only %d messages acknowledged during the upgrade", len(sent))
	}
	t.Logf("published %d messages (acknowledged), %d publish retries", len(sent), pub.retries)

	var moved int
	for _, s := range subs {
		missing := s.waitAll(ctx, sent)
		if len(missing) > 0 {
			t.Errorf("MQTT subscriber %s: %d of %d messages missing (first %v)", s.id, len(missing), len(sent), missing[:min(5, len(missing))])
		}
		if n := s.lostSessions(); n > 0 {
			t.Errorf("MQTT subscriber %s: session not present on %d reconnects", s.id, n)
		}
		moved += s.reconnects()
	}
	for i, s := range sses {
		if err := s.check(ctx, sent); err != nil {
			t.Errorf("SSE client %d: %v", i, err)
		}
		moved += s.reconnects()
	}
	// Every edge went away: each client moved at least once, or the test
	// proved nothing about the drain.
	if moved < loadSubscribers+loadSSEClients {
		t.Errorf("clients reconnected %d times in all during the roll, want at least one each (%d)", moved, loadSubscribers+loadSSEClients)
	}
	t.Logf("each of %d MQTT subscribers and %d SSE clients received all %d messages; %d reconnects", len(subs), len(sses), len(sent), moved)
}

// testAutoscalingToggle turns the edges' HPA off with more edges than its
// minimum, then on again: the Deployment keeps the edges it has instead of
// falling to 1 (a manifest without replicas) and waiting for the HPA.
func testAutoscalingToggle(t *testing.T, c *cluster, ns string, values []string) {
	base := append([]string{"upgrade", "herald", "charts/herald", "-n", ns, "--wait", "--timeout", "5m"}, values...)
	c.must(t, "", "helm", append(base, "--set", "edge.autoscaling.enabled=false", "--set", "edge.replicas=3")...)
	if n := c.deploymentReplicas(t, ns, "herald-edge"); n != 3 {
		t.Fatalf("edge replicas %d with autoscaling off and edge.replicas=3", n)
	}
	if out, err := c.run("", nil, "kubectl", "-n", ns, "get", "hpa", "herald-edge"); err == nil {
		t.Errorf("HPA still there with autoscaling off:\n%s", out)
	}
	c.must(t, "", "helm", base...)
	if n := c.deploymentReplicas(t, ns, "herald-edge"); n != 3 {
		t.Errorf("edge replicas %d right after autoscaling came back on, want the 3 that ran", n)
	}
	c.must(t, "", "kubectl", "-n", ns, "get", "hpa", "herald-edge")
}

// waitKeyKnown polls the edges with the endpoint's key until they accept it.
func waitKeyKnown(ctx context.Context, t *testing.T, ep endpoint) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ep.tls}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var last string
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+ep.https+"/poll?topic="+url.QueryEscape(loadTopics+"key")+"&timeout=0", nil)
		req.Header.Set("Authorization", "Bearer "+ep.token)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
	t.Fatalf("the edges never accepted the key: %s", last)
}

// reconnectSoon retries at once, then every 100 ms.
func reconnectSoon(attempt int) time.Duration {
	if attempt == 0 {
		return 0
	}
	return 100 * time.Millisecond
}

func mqttConfig(ep endpoint, id string) autopaho.ClientConfig {
	return autopaho.ClientConfig{
		ServerUrls: []*url.URL{{Scheme: "tls", Host: ep.mqtt}}, TlsCfg: ep.tls,
		KeepAlive: 30, CleanStartOnInitialConnection: true, SessionExpiryInterval: 600,
		ReconnectBackoff: reconnectSoon, ConnectTimeout: 5 * time.Second,
		ConnectUsername: loadTenant, ConnectPassword: []byte(ep.token),
		ClientConfig: paho.ClientConfig{ClientID: id},
	}
}

// subscriber is a persistent QoS 1 MQTT 5 subscriber of roll/#.
type subscriber struct {
	id string

	mu       sync.Mutex
	got      map[string]int
	ups      int
	notFound int // reconnects without the session
	changed  chan struct{}
}

func newSubscriber(ctx context.Context, t *testing.T, ep endpoint, id string) *subscriber {
	t.Helper()
	s := &subscriber{id: id, got: map[string]int{}, changed: make(chan struct{}, 1)}
	cfg := mqttConfig(ep, id)
	cfg.OnConnectionUp = func(_ *autopaho.ConnectionManager, ack *paho.Connack) {
		s.mu.Lock()
		if s.ups > 0 && !ack.SessionPresent {
			s.notFound++
		}
		s.ups++
		s.mu.Unlock()
	}
	cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
		s.mu.Lock()
		s.got[string(pr.Packet.Payload)]++
		s.mu.Unlock()
		select {
		case s.changed <- struct{}{}:
		default:
		}
		return true, nil
	}}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: loadTopics + "#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = cm.Disconnect(dctx)
	})
	return s
}

func (s *subscriber) lostSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notFound
}

func (s *subscriber) reconnects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ups - 1
}

// waitAll waits until the subscriber has every message of sent (or nothing
// new came for 10 s) and returns those missing.
func (s *subscriber) waitAll(ctx context.Context, sent []string) []string {
	for {
		s.mu.Lock()
		var missing []string
		for _, p := range sent {
			if s.got[p] == 0 {
				missing = append(missing, p)
			}
		}
		s.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-s.changed:
		case <-time.After(10 * time.Second):
			return missing
		case <-ctx.Done():
			return missing
		}
	}
}

// publisher publishes QoS 1 messages "0", "1", ... at a steady pace,
// retrying each until acknowledged.
type publisher struct {
	cancel  context.CancelFunc
	done    chan struct{}
	sent    []string
	retries int
}

func newPublisher(ctx context.Context, t *testing.T, ep endpoint) *publisher {
	t.Helper()
	cm, err := autopaho.NewConnection(ctx, mqttConfig(ep, "k8s-publisher"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &publisher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = cm.Disconnect(dctx)
		}()
		tick := time.NewTicker(loadEvery)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
			payload := strconv.Itoa(i)
			for {
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := cm.Publish(pctx, &paho.Publish{Topic: loadTopics + strconv.Itoa(i%4), QoS: 1, Payload: []byte(payload)})
				pcancel()
				if err == nil {
					p.sent = append(p.sent, payload)
					break
				}
				if ctx.Err() != nil {
					return
				}
				p.retries++
				_ = cm.AwaitConnection(ctx)
			}
		}
	}()
	return p
}

// stop ends the publishing and returns the messages acknowledged.
func (p *publisher) stop() []string {
	p.cancel()
	<-p.done
	return p.sent
}

// sseClient follows roll/# over SSE as EventSource does: when the stream
// ends it waits the last retry: delay and reconnects, through the same
// Service, with Last-Event-ID.
type sseClient struct {
	ep     endpoint
	client *http.Client
	open   chan struct{}
	done   chan struct{}

	mu      sync.Mutex
	events  []ssestream.Event
	streams int
	err     error
}

func newSSEClient(ctx context.Context, ep endpoint) *sseClient {
	s := &sseClient{ep: ep, open: make(chan struct{}), done: make(chan struct{}),
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: ep.tls, ForceAttemptHTTP2: true}}}
	go s.run(ctx)
	return s
}

func (s *sseClient) reconnects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams - 1
}

func (s *sseClient) run(ctx context.Context) {
	defer close(s.done)
	lastID, retry := "", 2*time.Second
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+s.ep.https+"/sse?topic="+url.QueryEscape(loadTopics+"#"), nil)
		req.Header.Set("Authorization", "Bearer "+s.ep.token)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		if resp, err := s.client.Do(req); err == nil {
			if resp.StatusCode == http.StatusOK {
				s.mu.Lock()
				s.streams++
				if s.streams == 1 {
					close(s.open)
				}
				s.mu.Unlock()
				lastID, retry = ssestream.Read(resp.Body, lastID, retry, s.add, s.fail)
			}
			resp.Body.Close()
		}
		select {
		case <-time.After(retry):
		case <-ctx.Done():
		}
	}
}

func (s *sseClient) add(e ssestream.Event) {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
}

func (s *sseClient) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// check waits until the client has every message of sent, then requires
// exactly the stream (ssestream.Exact).
func (s *sseClient) check(ctx context.Context, sent []string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		s.mu.Lock()
		events := slices.Clone(s.events)
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return err
		}
		missing, err := ssestream.Exact(events, sent)
		if err != nil || missing == 0 {
			return err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d of %d messages missing", missing, len(sent))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
