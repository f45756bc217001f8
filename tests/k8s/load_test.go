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
	"github.com/heraldmq/herald/tests/mqttload"
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

	subs := make([]*mqttload.Subscriber, loadSubscribers)
	for i := range subs {
		subs[i] = mqttload.NewSubscriber(ctx, t, mqttConfig(ep, fmt.Sprintf("k8s-sub-%d", i)), loadTopics+"#")
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
	pub := mqttload.NewPublisher(ctx, t, mqttConfig(ep, "k8s-publisher"),
		func(i int) string { return loadTopics + strconv.Itoa(i%4) }, loadEvery)
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
	sent, retries := pub.Stop()
	if len(sent) < 100 {
		t.Fatalf("only %d messages acknowledged during the upgrade", len(sent))
	}
	t.Logf("published %d messages (acknowledged), %d publish retries", len(sent), retries)

	var moved int
	for _, s := range subs {
		missing := s.WaitAll(ctx, sent, 10*time.Second)
		if len(missing) > 0 {
			t.Errorf("MQTT subscriber %s: %d of %d messages missing (first %v)", s.ID, len(missing), len(sent), missing[:min(5, len(missing))])
		}
		if n := s.LostSessions(); n > 0 {
			t.Errorf("MQTT subscriber %s: session not present on %d reconnects", s.ID, n)
		}
		moved += s.Reconnects()
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

func mqttConfig(ep endpoint, id string) autopaho.ClientConfig {
	return autopaho.ClientConfig{
		ServerUrls: []*url.URL{{Scheme: "tls", Host: ep.mqtt}}, TlsCfg: ep.tls,
		KeepAlive: 30, CleanStartOnInitialConnection: true, SessionExpiryInterval: 600,
		ReconnectBackoff: mqttload.ReconnectSoon, ConnectTimeout: 5 * time.Second,
		ConnectUsername: loadTenant, ConnectPassword: []byte(ep.token),
		ClientConfig: paho.ClientConfig{ClientID: id},
	}
}

// sseClient follows roll/# over SSE as EventSource does: when the stream
// ends it waits the last retry: delay and reconnects, through the same
// Service, with Last-Event-ID.
type sseClient struct {
	ep     endpoint
	client *http.Client
	open   chan struct{}
	done   chan struct{}

	log ssestream.Log

	mu      sync.Mutex
	streams int
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
				lastID, retry = ssestream.Read(resp.Body, lastID, retry, s.log.Add, s.log.Fail)
			}
			resp.Body.Close()
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
	return s.log.Wait(ctx, sent, 15*time.Second)
}
