// Package soak runs bin/herald (the embedded default) for a long while at
// half its measured capacity, with clients of every transport connecting
// and leaving all the time, and checks that its resident memory,
// goroutines and open files stay flat. `make soak` runs it for
// SOAK_DURATION (default 10m); without SOAK_DURATION the test is skipped.
package soak

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/tests/localcluster"
)

// Load. docs/benchmarks.md measured the embedded herald at about 10,700
// QoS 1 messages/s from one publisher to one subscriber on this class of
// machine; the soak publishes half of that (SOAK_RATE overrides), spread
// over publishers, to one wildcard subscriber, while churners connect and
// leave.
const (
	defaultRate    = 5000
	publishers     = 25
	churnersPerKin = 3 // per transport: MQTT, SSE, WebSocket
	payloadSize    = 100
	sampleEvery    = 10 * time.Second
)

// Flatness. The figures are compared between the post-warm-up window (from
// the end of the warm-up to one minute before the end) and the last
// minute; the last minute's mean may exceed the window's by at most these.
// A leak of one goroutine or one file per churned connection (tens per
// second) or of one buffer per message (thousands per second) exceeds them
// within minutes; the slack absorbs what is in flight at a sample (churning
// clients, queued messages) and the garbage collector's sawtooth, which is
// up to about GOGC=100 % of the live heap but averages out over six samples.
const (
	rssTolerance       = 0.25 // of the window mean
	goroutineTolerance = 0.10
	goroutineSlack     = 60 // in-flight churn: ~3 goroutines per connection
	fdTolerance        = 0.10
	fdSlack            = 30
)

// sample is one measurement of the herald process.
type sample struct {
	at         time.Duration
	rssKiB     int64
	goroutines int
	fds        int
}

// TestSoak ensures the embedded herald under half its measured load, with
// MQTT, SSE and WebSocket clients churning, keeps its RSS, goroutine count
// and open files flat (last minute against the post-warm-up mean, within
// the tolerances above) and delivers what it acknowledged.
func TestSoak(t *testing.T) {
	durText := os.Getenv("SOAK_DURATION")
	if durText == "" {
		t.Skip("SOAK_DURATION not set (make soak sets it)")
	}
	dur, err := time.ParseDuration(durText)
	if err != nil || dur < 3*time.Minute {
		t.Fatalf("SOAK_DURATION %q: want a duration of at least 3m", durText)
	}
	rate := defaultRate
	if v := os.Getenv("SOAK_RATE"); v != "" {
		if rate, err = strconv.Atoi(v); err != nil || rate <= 0 {
			t.Fatalf("SOAK_RATE %q", v)
		}
	}
	warmup := min(2*time.Minute, dur/5)
	h := startHerald(t)

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	var published, pubErrors, delivered, churned, churnErrors atomic.Int64

	// The subscriber of everything published.
	sub := mqttClient(t, context.Background(), h.mqtt, "soak-sub", func(paho.PublishReceived) (bool, error) {
		delivered.Add(1)
		return true, nil
	})
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "soak/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	// Publishers: each sends a burst every 10 ms, rate/publishers per second.
	payload := make([]byte, payloadSize)
	perTick := max(1, rate/publishers/100)
	for p := range publishers {
		c := mqttClient(t, context.Background(), h.mqtt, fmt.Sprint("soak-pub-", p), nil)
		wg.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for k := 0; ; k++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				for range perTick {
					pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
					_, err := c.Publish(pctx, &paho.Publish{Topic: fmt.Sprintf("soak/%d/%d", p, k%50), QoS: 1, Payload: payload})
					pcancel()
					switch {
					case err == nil:
						published.Add(1)
					case ctx.Err() == nil:
						pubErrors.Add(1)
					}
				}
			}
		})
	}
	// Churners: connect, receive for 0.5–2.5 s, leave; again.
	churn := func(name string, once func(ctx context.Context, id int) error) {
		for i := range churnersPerKin {
			wg.Go(func() {
				for n := 0; ctx.Err() == nil; n++ {
					stay, cancel := context.WithTimeout(ctx, 500*time.Millisecond+rand.N(2*time.Second))
					err := once(stay, i*1_000_000+n)
					cancel()
					if err != nil && ctx.Err() == nil {
						churnErrors.Add(1)
						t.Logf("%s churner: %v", name, err)
						time.Sleep(time.Second)
					}
					churned.Add(1)
				}
			})
		}
	}
	churn("mqtt", func(stay context.Context, id int) error {
		return mqttOnce(stay, h.mqtt, fmt.Sprint("churn-", id))
	})
	churn("sse", func(stay context.Context, _ int) error { return sseOnce(stay, h.http) })
	churn("ws", func(stay context.Context, _ int) error { return wsOnce(stay, h.http) })

	// Sampling.
	start := time.Now()
	var samples []sample
	tick := time.NewTicker(sampleEvery)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			s, err := h.sample(time.Since(start))
			if err != nil {
				t.Fatalf("sample: %v", err)
			}
			samples = append(samples, s)
			t.Logf("%6s rss %7d KiB  goroutines %5d  fds %4d  published %9d  delivered %9d  churned %6d",
				s.at.Round(time.Second), s.rssKiB, s.goroutines, s.fds, published.Load(), delivered.Load(), churned.Load())
		}
	}
	tick.Stop()
	wg.Wait()
	// Let the last acknowledged messages arrive.
	for deadline := time.Now().Add(10 * time.Second); delivered.Load() < published.Load() && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}

	elapsed := time.Since(start)
	t.Logf("published %d (%.0f/s), publish errors %d, delivered %d, connections churned %d (%.1f/s), churn errors %d",
		published.Load(), float64(published.Load())/elapsed.Seconds(), pubErrors.Load(), delivered.Load(),
		churned.Load(), float64(churned.Load())/elapsed.Seconds(), churnErrors.Load())
	if delivered.Load() < published.Load() {
		t.Errorf("delivered %d of %d acknowledged QoS 1 messages", delivered.Load(), published.Load())
	}
	if pubErrors.Load() > published.Load()/1000 {
		t.Errorf("%d publish errors for %d publishes", pubErrors.Load(), published.Load())
	}
	if churnErrors.Load() > churned.Load()/100 {
		t.Errorf("%d churn errors for %d connections", churnErrors.Load(), churned.Load())
	}
	var window, last []sample
	for _, s := range samples {
		switch {
		case s.at >= dur-time.Minute:
			last = append(last, s)
		case s.at >= warmup:
			window = append(window, s)
		}
	}
	if len(window) < 3 || len(last) < 3 {
		t.Fatalf("%d window and %d last-minute samples: too few", len(window), len(last))
	}
	check := func(what string, get func(sample) float64, tol, slack float64) {
		w, l := mean(window, get), mean(last, get)
		limit := w*(1+tol) + slack
		t.Logf("%s: post-warm-up mean %.0f, last-minute mean %.0f, limit %.0f", what, w, l, limit)
		if l > limit {
			t.Errorf("%s grew: last minute %.0f > %.0f (window mean %.0f)", what, l, limit, w)
		}
	}
	check("RSS KiB", func(s sample) float64 { return float64(s.rssKiB) }, rssTolerance, 0)
	check("goroutines", func(s sample) float64 { return float64(s.goroutines) }, goroutineTolerance, goroutineSlack)
	check("open fds", func(s sample) float64 { return float64(s.fds) }, fdTolerance, fdSlack)
}

func mean(ss []sample, get func(sample) float64) float64 {
	var sum float64
	for _, s := range ss {
		sum += get(s)
	}
	return sum / float64(len(ss))
}

// herald is the process under soak.
type herald struct {
	mqtt, http, ops string
	pid             int
}

func startHerald(t *testing.T) *herald {
	t.Helper()
	bin := filepath.Join(localcluster.BinDir(), "herald")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run `make build`", bin)
	}
	p, err := localcluster.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(p[i]) }
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(dir, "herald.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--data-dir", filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(), "HERALD_MQTT_ADDR="+addr(0), "HERALD_HTTP_ADDR="+addr(1), "HERALD_ADMIN_ADDR="+addr(2),
		"HERALD_OPS_ADDR="+addr(3), "HERALD_LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			if len(b) > 32<<10 {
				b = b[len(b)-32<<10:]
			}
			t.Logf("--- herald log (tail)\n%s", b)
		}
	})
	h := &herald{mqtt: addr(0), http: "http://" + addr(1), ops: "http://" + addr(3), pid: cmd.Process.Pid}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(h.ops + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("herald not ready after 60s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sample reads the process's RSS and open files from /proc and its
// goroutine count from the ops pprof endpoint.
func (h *herald) sample(at time.Duration) (sample, error) {
	s := sample{at: at}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.pid))
	if err != nil {
		return s, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.rssKiB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", h.pid))
	if err != nil {
		return s, err
	}
	s.fds = len(fds)
	resp, err := http.Get(h.ops + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	first, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return s, err
	}
	// "goroutine profile: total N"
	_, n, _ := strings.Cut(strings.TrimSpace(first), "total ")
	if s.goroutines, err = strconv.Atoi(n); err != nil {
		return s, fmt.Errorf("goroutine profile header %q", first)
	}
	return s, nil
}

// mqttClient connects a Paho v5 client for the whole test.
func mqttClient(t *testing.T, ctx context.Context, addr, id string, onPublish func(paho.PublishReceived) (bool, error)) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := paho.ClientConfig{Conn: conn}
	if onPublish != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){onPublish}
	}
	c := paho.NewClient(cfg)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ca, err := c.Connect(cctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{ReceiveMaximum: ptr(uint16(1000))}})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func ptr[T any](v T) *T { return &v }

// mqttOnce connects, subscribes to one publisher's topics, stays until
// stay is done and disconnects.
func mqttOnce(stay context.Context, addr, id string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(paho.PublishReceived) (bool, error) { return true, nil }}})
	ctx, cancel := context.WithTimeout(context.WithoutCancel(stay), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		conn.Close()
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "soak/0/#", QoS: 1}}}); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	<-stay.Done()
	return nil
}

// sseOnce reads an SSE stream of one publisher's topics until stay is done.
func sseOnce(stay context.Context, base string) error {
	req, err := http.NewRequestWithContext(stay, http.MethodGet, base+"/sse?topic=soak/1/%23", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if stay.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sse: %s", resp.Status)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// wsOnce subscribes over the native WebSocket and reads until stay is done.
func wsOnce(stay context.Context, base string) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(stay), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		return err
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	if err := c.Write(dctx, websocket.MessageText, []byte(`{"op":"subscribe","id":"1","topic":"soak/2/#"}`)); err != nil {
		return err
	}
	for {
		if _, _, err := c.Read(stay); err != nil {
			if stay.Err() != nil {
				_ = c.Close(websocket.StatusNormalClosure, "")
				return nil
			}
			return err
		}
	}
}
