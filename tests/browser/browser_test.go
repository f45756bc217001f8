package browser

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/paho"
)

// startBrowser launches headless Chromium with a fresh profile and returns
// a context for one tab; the browser is stopped at the end of the test.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := need(t, "chromium")
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", "new"),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// netWatch records, from the browser's network events, which edge
// answered each stream the page opened (the X-Herald-Edge header of /sse
// responses and WebSocket handshakes) and how each /sse request resumed.
type netWatch struct {
	mu      sync.Mutex
	streams []string // edge ids, in the order the streams opened
	sse     []network.RequestID
	query   map[network.RequestID]string // lastEventId query of /sse requests
	header  map[network.RequestID]string // Last-Event-ID header sent, of every request
	changed chan struct{}
}

// resumes returns, per /sse request in order, the position it resumed
// from: its Last-Event-ID header, else its lastEventId query.
func (w *netWatch) resumes() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, id := range w.sse {
		r := w.header[id]
		if r == "" {
			r = w.query[id]
		}
		out = append(out, r)
	}
	return out
}

func header(h map[string]any, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// watchNetwork enables the Network domain and starts recording; it must
// run before the page loads.
func watchNetwork(t *testing.T, ctx context.Context) *netWatch {
	t.Helper()
	w := &netWatch{changed: make(chan struct{}, 1), query: map[network.RequestID]string{}, header: map[network.RequestID]string{}}
	add := func(f func()) {
		w.mu.Lock()
		f()
		w.mu.Unlock()
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
	responses := chromedp.Events(ctx, network.ResponseReceived)
	handshakes := chromedp.Events(ctx, network.WebSocketHandshakeResponseReceived)
	requests := chromedp.Events(ctx, network.RequestWillBeSent)
	// The headers as sent (Last-Event-ID is added by the network stack).
	sentHeaders := chromedp.Events(ctx, network.RequestWillBeSentExtraInfo)
	go func() {
		for ev, err := range responses {
			if err != nil {
				return
			}
			if ev.Response != nil && strings.Contains(ev.Response.URL, "/sse?") && ev.Response.Status == 200 {
				add(func() { w.streams = append(w.streams, header(ev.Response.Headers, "X-Herald-Edge")) })
			}
		}
	}()
	go func() {
		for ev, err := range handshakes {
			if err != nil {
				return
			}
			if ev.Response != nil && ev.Response.Status == 101 {
				add(func() { w.streams = append(w.streams, header(ev.Response.Headers, "X-Herald-Edge")) })
			}
		}
	}()
	go func() {
		for ev, err := range requests {
			if err != nil {
				return
			}
			if ev.Request == nil || !strings.Contains(ev.Request.URL, "/sse?") {
				continue
			}
			var q string
			if u, err := url.Parse(ev.Request.URL); err == nil {
				q = u.Query().Get("lastEventId")
			}
			add(func() { w.sse, w.query[ev.RequestID] = append(w.sse, ev.RequestID), q })
		}
	}()
	go func() {
		for ev, err := range sentHeaders {
			if err != nil {
				return
			}
			if h := header(ev.Headers, "Last-Event-ID"); h != "" {
				add(func() { w.header[ev.RequestID] = h })
			}
		}
	}()
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	return w
}

// stream waits for the i-th stream (from 0) to open and returns its edge.
func (w *netWatch) stream(t *testing.T, i int) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		w.mu.Lock()
		if len(w.streams) > i {
			id := w.streams[i]
			w.mu.Unlock()
			return id
		}
		w.mu.Unlock()
		select {
		case <-w.changed:
		case <-timeout:
			t.Fatalf("stream %d never opened", i)
		}
	}
}

// received is an entry of the page's window.received.
type received struct {
	ID      string `json:"id"`
	Topic   string `json:"topic"`
	Payload string `json:"payload"`
	Seq     uint64 `json:"seq"`
}

// pageState is the page's window.herald.
type pageState struct {
	Transport string `json:"transport"`
	State     string `json:"state"`
	Opens     int    `json:"opens"`
	Errors    int    `json:"errors"`
	Closes    []int  `json:"closes"`
	LastID    string `json:"lastId"`
}

// waitPage waits until the page's JavaScript expression is truthy.
func waitPage(t *testing.T, ctx context.Context, expr string, timeout time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(timeout))); err != nil {
		st, _ := chromedp.Run(ctx, chromedp.Evaluate[pageState](`window.herald`))
		n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`window.received.length`))
		t.Fatalf("page: %q not true within %s: %v (state %+v, %d received)", expr, timeout, err, st, n)
	}
}

// TestBrowserSSEFailover ensures that the example page, loaded in headless
// Chromium through a load balancer, receives over EventSource every message
// an MQTT client publishes, exactly once and in order, although the edge
// holding its stream is killed mid-way: EventSource reconnects through the
// balancer to the other edge and resumes from its Last-Event-ID.
func TestBrowserSSEFailover(t *testing.T) { browserFailover(t, "sse") }

// TestBrowserWebSocketFailover ensures the same with the page's native
// WebSocket mode, which resubscribes from the position of its last message.
func TestBrowserWebSocketFailover(t *testing.T) { browserFailover(t, "ws") }

// browserFailover runs the failover of the page's transport (a page
// parameter) on the local cluster started with env, and returns the
// browser's tab and the cluster.
func browserFailover(t *testing.T, transport string, env ...string) (context.Context, *cluster) {
	c := startCluster(t, env...)
	lb := startHAProxy(t, c.A, c.B)
	ctx := startBrowser(t)
	net := watchNetwork(t, ctx)
	// The edge holding the page's i-th stream: from the browser's network
	// events, or, for WebTransport sessions (which they do not show), from
	// the page (the edge that answered its GET /webtransport).
	streamEdge := func(i int) string {
		if transport != "auto" {
			return net.stream(t, i)
		}
		waitPage(t, ctx, fmt.Sprintf(`window.herald.edges.length > %d`, i), 20*time.Second)
		id, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`window.herald.edges[%d]`, i)))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}

	run := fmt.Sprintf("browser/%s/%d", transport, time.Now().UnixNano())
	page := lb + "/?transport=" + transport + "&topic=" + url.QueryEscape(run+"/#")
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	waitPage(t, ctx, `window.herald.state === "open"`, 15*time.Second)
	victim := c.byID(t, streamEdge(0))
	survivor := c.other(victim)
	t.Logf("page's %s stream is on %s; the publisher uses %s", transport, victim.ID, survivor.ID)

	// The publisher talks to the surviving edge: the test is about the
	// browser's stream, not the publisher's failover.
	pub := pahoConnect(t, survivor.MQTT, "browser-pub")
	const total = 400
	published := make(chan error, 1)
	var sent sync.Map
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		tick := time.NewTicker(10 * time.Millisecond) // a steady 100 msg/s
		defer tick.Stop()
		for i := 1; i <= total; i++ {
			<-tick.C
			if _, err := pub.Publish(ctx, &paho.Publish{Topic: run + "/n", QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
				published <- fmt.Errorf("publish %d: %w", i, err)
				return
			}
			sent.Store("n", i)
		}
		published <- nil
	}()

	waitPage(t, ctx, `window.received.length >= 100`, 20*time.Second)
	c.kill(t, victim)
	if n, _ := sent.Load("n"); n.(int) >= total {
		t.Fatalf("publishing had finished (%d sent) when the edge was killed: the test proves nothing", n)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if id := streamEdge(1); id != survivor.ID {
		t.Fatalf("the page reconnected to %q, want %s", id, survivor.ID)
	}
	waitPage(t, ctx, fmt.Sprintf(`window.received.length >= %d`, total), 30*time.Second)
	// A last message: once it is in, anything duplicated before it would be too.
	if _, err := pub.Publish(context.Background(), &paho.Publish{Topic: run + "/n", QoS: 1, Payload: []byte("end")}); err != nil {
		t.Fatal(err)
	}
	waitPage(t, ctx, `window.received.some(m => m.payload === "end")`, 10*time.Second)

	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]received](`window.received`))
	if err != nil {
		t.Fatal(err)
	}
	st, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](`window.herald`))
	if err != nil {
		t.Fatal(err)
	}
	gaps, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`window.gaps.length`))
	if len(got) != total+1 || gaps != 0 {
		t.Fatalf("page holds %d messages and %d gaps, want %d and none", len(got), gaps, total+1)
	}
	var prev uint64
	for i, m := range got {
		want := strconv.Itoa(i + 1)
		if i == total {
			want = "end"
		}
		if m.Payload != want || m.Topic != run+"/n" || m.Seq <= prev || !strings.HasSuffix(m.ID, "-"+strconv.FormatUint(m.Seq, 10)) {
			t.Fatalf("message %d is %+v (previous seq %d), want payload %s: lost, repeated or reordered", i, m, prev, want)
		}
		prev = m.Seq
	}
	if st.Opens < 2 {
		t.Fatalf("page state %+v: it never reconnected", st)
	}
	if transport == "sse" {
		resumes := net.resumes()
		resumed := false
		for _, r := range resumes[1:] {
			resumed = resumed || r != ""
		}
		if !resumed {
			t.Fatalf("no /sse request after the first carried a Last-Event-ID: %q", resumes)
		}
		t.Logf("/sse requests resumed from %q", resumes)
	}
	t.Logf("page state %+v; %d messages exactly once, in order, across the kill of %s", st, len(got), victim.ID)
	return ctx, c
}

// pahoConnect connects an Eclipse Paho MQTT 5 client.
func pahoConnect(t *testing.T, addr, clientID string) *paho.Client {
	t.Helper()
	conn, err := (&netDialer{}).dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: clientID + strconv.FormatInt(time.Now().UnixNano(), 36), CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("paho connect to %s: %v", addr, err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("CONNACK reason %#x", ca.ReasonCode)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{ReasonCode: 0}) })
	return c
}
