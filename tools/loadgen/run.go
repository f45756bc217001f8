package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/eclipse/paho.golang/paho"
)

type runCmd struct {
	Name     string        `help:"Scenario name in the result." default:"run"`
	MQTT     []string      `help:"MQTT broker addresses (host:port); publishers and MQTT subscribers spread over them." default:"127.0.0.1:1883"`
	HTTP     []string      `help:"Herald edge base URLs for SSE/WebSocket subscribers." default:"http://127.0.0.1:8080"`
	Pattern  string        `help:"pairwise (pub i -> sub i), fanout (1 topic, all subs), fanin (all pubs -> 1 sub)." enum:"pairwise,fanout,fanin" default:"pairwise"`
	Pubs     int           `help:"Publishers." default:"1"`
	Subs     int           `help:"Subscribers." default:"1"`
	SubProto string        `help:"Subscriber protocol: mqtt, sse, ws or wt (WebTransport; the edge's URL must be https) (mixed: comma list, used in turn)." default:"mqtt"`
	QoS      byte          `name:"qos" help:"Publish and subscribe QoS (0 or 1)." default:"0"`
	Rate     int           `help:"Messages per second per publisher; 0 = as fast as possible." default:"0"`
	Size     int           `help:"Payload bytes (at least 16)." default:"100"`
	Duration time.Duration `help:"How long publishers publish." default:"10s"`
	Grace    time.Duration `help:"How long to wait for deliveries after publishing stops." default:"5s"`
	PID      []int         `placeholder:"PID" help:"Server process ids to sample (RSS, CPU)."`
	Sources  int           `help:"Source addresses 127.0.0.1..N to spread connections over." default:"16"`
	Version  string        `help:"MQTT version for clients: 5 or 3 (3.1.1)." enum:"5,3" default:"5"`
}

// Result is the JSON a run prints.
type Result struct {
	Name        string        `json:"name"`
	Pattern     string        `json:"pattern"`
	Pubs        int           `json:"pubs"`
	Subs        int           `json:"subs"`
	SubProto    string        `json:"sub_proto"`
	QoS         byte          `json:"qos"`
	Size        int           `json:"size"`
	Seconds     float64       `json:"seconds"`
	Published   uint64        `json:"published"`
	Expected    uint64        `json:"expected"`
	Received    uint64        `json:"received"`
	Lost        uint64        `json:"lost"`
	Duplicated  uint64        `json:"duplicated"`
	PubPerSec   float64       `json:"published_per_sec"`
	RecvPerSec  float64       `json:"received_per_sec"`
	LatencyUS   Latency       `json:"latency_us"`
	Servers     []ServerUsage `json:"servers,omitempty"`
	ConnectSecs float64       `json:"connect_seconds"`
}

// Latency percentiles in microseconds.
type Latency struct {
	P50  int64 `json:"p50"`
	P99  int64 `json:"p99"`
	P999 int64 `json:"p999"`
	Max  int64 `json:"max"`
}

func (c *runCmd) Run() error {
	for _, a := range c.MQTT {
		if err := checkLoopback(a); err != nil {
			return err
		}
	}
	for _, u := range c.HTTP {
		pu, err := url.Parse(u)
		if err != nil {
			return err
		}
		if err := checkLoopback(pu.Host); err != nil {
			return err
		}
	}
	if c.Size < header {
		return fmt.Errorf("--size must be at least %d", header)
	}
	if c.Pattern == "pairwise" && c.Pubs != c.Subs {
		return errors.New("pairwise needs --pubs == --subs")
	}
	if c.Pattern == "fanin" {
		c.Subs = 1
	}
	if c.Pattern == "fanout" {
		c.Pubs = 1
	}
	src := &sources{n: c.Sources}
	run := fmt.Sprintf("bench/%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), c.Duration+c.Grace+5*time.Minute)
	defer cancel()

	topicOf := func(pub int) string {
		switch c.Pattern {
		case "fanout":
			return run + "/all"
		case "fanin":
			return fmt.Sprintf("%s/in/%d", run, pub)
		}
		return fmt.Sprintf("%s/p/%d", run, pub)
	}
	filterOf := func(sub int) string {
		switch c.Pattern {
		case "fanout":
			return run + "/all"
		case "fanin":
			return run + "/in/+"
		}
		return fmt.Sprintf("%s/p/%d", run, sub)
	}

	connStart := time.Now()
	protos := strings.Split(c.SubProto, ",")
	recvs := make([]*receiver, c.Subs)
	var closers []func()
	defer func() {
		for _, f := range closers {
			f()
		}
	}()
	var mu sync.Mutex
	errc := make(chan error, c.Subs+c.Pubs)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64) // connect at most 64 at once
	for i := 0; i < c.Subs; i++ {
		recvs[i] = newReceiver()
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var closeFn func()
			var err error
			switch proto := protos[i%len(protos)]; proto {
			case "mqtt":
				closeFn, err = c.mqttSubscriber(ctx, src, c.MQTT[i%len(c.MQTT)], filterOf(i), recvs[i])
			case "sse":
				closeFn, err = sseSubscriber(ctx, src, c.HTTP[i%len(c.HTTP)], filterOf(i), recvs[i])
			case "ws":
				closeFn, err = wsSubscriber(ctx, src, c.HTTP[i%len(c.HTTP)], filterOf(i), recvs[i])
			case "wt":
				closeFn, err = wtSubscriber(ctx, c.HTTP[i%len(c.HTTP)], filterOf(i), recvs[i])
			default:
				err = fmt.Errorf("unknown subscriber protocol %q", proto)
			}
			if err != nil {
				errc <- err
				return
			}
			mu.Lock()
			closers = append(closers, closeFn)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	select {
	case err := <-errc:
		return fmt.Errorf("subscriber: %w", err)
	default:
	}

	pubs := make([]publisher, c.Pubs)
	for i := range pubs {
		addr, id := c.MQTT[i%len(c.MQTT)], fmt.Sprintf("lg-pub-%d-%d", os.Getpid(), i)
		if c.Version == "3" {
			cl, err := newV3Client(ctx, src, addr, id)
			if err != nil {
				return fmt.Errorf("publisher: %w", err)
			}
			pubs[i] = cl.publish
			closers = append(closers, cl.close)
			continue
		}
		cl, err := c.mqttClient(ctx, src, addr, id, nil)
		if err != nil {
			return fmt.Errorf("publisher: %w", err)
		}
		pubs[i] = func(ctx context.Context, topic string, qos byte, payload []byte) error {
			_, err := cl.PublishWithOptions(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload},
				paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
			return err
		}
		closers = append(closers, func() { _ = cl.Disconnect(&paho.Disconnect{}) })
	}
	connectSecs := time.Since(connStart).Seconds()
	fmt.Fprintf(os.Stderr, "loadgen %s: %d subscribers, %d publishers connected in %.1fs\n", c.Name, c.Subs, c.Pubs, connectSecs)

	watch := watchProcs(c.PID)
	var published atomic.Uint64
	start := time.Now()
	pubCtx, stopPub := context.WithTimeout(ctx, c.Duration)
	defer stopPub()
	go progress(pubCtx, &published, recvs)
	var pwg sync.WaitGroup
	for i, cl := range pubs {
		pwg.Add(1)
		go func(i int, cl publisher) {
			defer pwg.Done()
			if err := c.publish(pubCtx, cl, uint32(i), topicOf(i), &published); err != nil {
				errc <- err
			}
		}(i, cl)
	}
	pwg.Wait()
	pubSecs := time.Since(start).Seconds()

	fanout := uint64(1)
	if c.Pattern == "fanout" {
		fanout = uint64(c.Subs)
	}
	expected := published.Load() * fanout
	deadline := time.Now().Add(c.Grace)
	for time.Now().Before(deadline) && total(recvs) < expected {
		time.Sleep(50 * time.Millisecond)
	}
	servers := watch.finish()

	res := Result{Name: c.Name, Pattern: c.Pattern, Pubs: c.Pubs, Subs: c.Subs, SubProto: c.SubProto, QoS: c.QoS,
		Size: c.Size, Seconds: pubSecs, Published: published.Load(), Expected: expected, Servers: servers,
		ConnectSecs: connectSecs}
	h := hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3)
	for _, r := range recvs {
		r.mu.Lock()
		res.Received += r.received
		res.Duplicated += r.dups
		h.Merge(r.hist)
		r.mu.Unlock()
	}
	if res.Received < expected {
		res.Lost = expected - res.Received
	}
	res.PubPerSec = float64(res.Published) / pubSecs
	res.RecvPerSec = float64(res.Received) / pubSecs
	res.LatencyUS = Latency{P50: h.ValueAtQuantile(50), P99: h.ValueAtQuantile(99), P999: h.ValueAtQuantile(99.9), Max: h.Max()}
	select {
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "loadgen: publisher error:", err)
	default:
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

func total(recvs []*receiver) uint64 {
	var n uint64
	for _, r := range recvs {
		r.mu.Lock()
		n += r.received
		r.mu.Unlock()
	}
	return n
}

func progress(ctx context.Context, published *atomic.Uint64, recvs []*receiver) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastP, lastR uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p, r := published.Load(), total(recvs)
			fmt.Fprintf(os.Stderr, "  published %d (+%d/s)  received %d (+%d/s)\n", p, p-lastP, r, r-lastR)
			lastP, lastR = p, r
		}
	}
}

// publisher sends one message (QoS 1 pipelined: it need not wait for the PUBACK).
type publisher func(ctx context.Context, topic string, qos byte, payload []byte) error

// publish sends stamped messages until ctx ends, at c.Rate per second or
// as fast as the client allows (QoS 1: pipelined up to receive maximum).
func (c *runCmd) publish(ctx context.Context, send publisher, id uint32, topic string, n *atomic.Uint64) error {
	// At a fixed rate the publisher keeps to a schedule, not to a ticker
	// per message: a ticker drops the ticks a busy machine misses, and at
	// thousands per second the rate reached fell to half of the one asked
	// for. Every millisecond it sends what the schedule says is due.
	var tick <-chan time.Time
	start := time.Now()
	if c.Rate > 0 {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		tick = t.C
	}
	var sent float64
	for seq := uint32(1); ; {
		due := 1
		if tick != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-tick:
			}
			due = int(time.Since(start).Seconds()*float64(c.Rate) - sent)
		} else if ctx.Err() != nil {
			return nil
		}
		for ; due > 0; due-- {
			payload := make([]byte, c.Size)
			stamp(payload, id, seq)
			if err := send(ctx, topic, c.QoS, payload); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			seq++
			sent++
			n.Add(1)
		}
	}
}

func (c *runCmd) mqttClient(ctx context.Context, src *sources, addr, id string, onMsg func([]byte)) (*paho.Client, error) {
	conn, err := src.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	cfg := paho.ClientConfig{Conn: conn}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { onMsg(pr.Packet.Payload); return true, nil },
		}
	}
	cl := paho.NewClient(cfg)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ca, err := cl.Connect(cctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 60})
	if err != nil {
		return nil, err
	}
	if ca.ReasonCode != 0 {
		return nil, fmt.Errorf("CONNACK %#x", ca.ReasonCode)
	}
	return cl, nil
}

func (c *runCmd) mqttSubscriber(ctx context.Context, src *sources, addr, filter string, r *receiver) (func(), error) {
	if c.Version == "3" {
		cl, err := newV3Client(ctx, src, addr, fmt.Sprintf("lg-sub-%d-%p", os.Getpid(), r))
		if err != nil {
			return nil, err
		}
		if err := cl.subscribe(filter, c.QoS, r.record); err != nil {
			cl.close()
			return nil, err
		}
		return cl.close, nil
	}
	cl, err := c.mqttClient(ctx, src, addr, fmt.Sprintf("lg-sub-%d-%p", os.Getpid(), r), r.record)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cl.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: c.QoS}}}); err != nil {
		return nil, err
	}
	return func() { _ = cl.Disconnect(&paho.Disconnect{}) }, nil
}

// wireMessage is the JSON Herald puts in SSE data and WebSocket frames.
type wireMessage struct {
	Type     string `json:"type"`
	ID       string `json:"id"`
	Payload  string `json:"payload"`
	Encoding string `json:"encoding"`
}

func (w wireMessage) bytes() []byte {
	if w.Encoding == "base64" {
		b, _ := base64.StdEncoding.DecodeString(w.Payload)
		return b
	}
	return []byte(w.Payload)
}

func sseSubscriber(ctx context.Context, src *sources, base, filter string, r *receiver) (func(), error) {
	sctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, base+"/sse?topic="+url.QueryEscape(filter), nil)
	resp, err := src.httpClient().Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		return nil, fmt.Errorf("GET /sse: %s", resp.Status)
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	// The first line (retry:) comes once live interest is in effect.
	if _, err := br.ReadString('\n'); err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer resp.Body.Close()
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if data, ok := strings.CutPrefix(string(line), "data: "); ok {
				var w wireMessage
				if json.Unmarshal([]byte(data), &w) == nil {
					r.record(w.bytes())
				}
			}
		}
	}()
	return cancel, nil
}

func wsSubscriber(ctx context.Context, src *sources, base, filter string, r *receiver) (func(), error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", &websocket.DialOptions{HTTPClient: src.httpClient()})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 20)
	if err := wsjson.Write(dctx, conn, map[string]any{"op": "subscribe", "id": "s", "topic": filter}); err != nil {
		return nil, err
	}
	for {
		var w wireMessage
		if err := wsjson.Read(dctx, conn, &w); err != nil {
			return nil, err
		}
		if w.Type == "ack" && w.ID == "s" {
			break
		}
		if w.Type == "error" {
			return nil, fmt.Errorf("ws subscribe refused")
		}
	}
	go func() {
		for {
			var w wireMessage
			if err := wsjson.Read(context.Background(), conn, &w); err != nil {
				return
			}
			if w.Type == "message" {
				r.record(w.bytes())
			}
		}
	}()
	return func() { _ = conn.CloseNow() }, nil
}
