package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

type idleCmd struct {
	Name    string        `help:"Scenario name in the result." default:"idle"`
	Proto   string        `help:"mqtt, sse, ws or wt (WebTransport sessions, each subscribed; the edge's URL must be https)." enum:"mqtt,sse,ws,wt" default:"mqtt"`
	Addr    string        `help:"MQTT host:port, or the edge base URL for sse and ws." default:"127.0.0.1:1883"`
	Conns   int           `help:"Connections to open." default:"1000"`
	Hold    time.Duration `help:"How long to hold them once all are open (the server settles)." default:"5s"`
	PID     int           `placeholder:"PID" help:"Server process id to measure."`
	Sources int           `help:"Source addresses 127.0.0.1..N." default:"32"`
	Version byte          `help:"MQTT protocol level: 4 (3.1.1) or 5." default:"4"`
	Topic   string        `help:"Topic filter SSE and WebSocket connections subscribe to." default:"idle/x"`
	// Subscribe measures what a subscribed device costs: each MQTT
	// connection holds one QoS 1 subscription to a topic of its own.
	Subscribe bool `help:"MQTT 3.1.1: each connection subscribes at QoS 1 to <topic>/<n>, a topic of its own."`
}

// IdleResult is the JSON an idle run prints.
type IdleResult struct {
	Name          string  `json:"name"`
	Proto         string  `json:"proto"`
	Conns         int     `json:"conns"`
	Opened        int64   `json:"opened"`
	RSSBeforeB    int64   `json:"rss_before_bytes"`
	RSSAfterB     int64   `json:"rss_after_bytes"`
	BytesPerConn  float64 `json:"bytes_per_conn"`
	OpenSeconds   float64 `json:"open_seconds"`
	FailedConnect int64   `json:"failed"`
}

func (c *idleCmd) Run() error {
	target := c.Addr
	if c.Proto != "mqtt" {
		u, err := url.Parse(c.Addr)
		if err != nil {
			return err
		}
		target = u.Host
	}
	if err := checkLoopback(target); err != nil {
		return err
	}
	before, _ := readProc(c.PID)
	src := &sources{n: c.Sources}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var conns sync.Map
	var opened, failed atomic.Int64
	start := time.Now()
	// QUIC handshakes beyond the server's accept queue are refused
	// (CONNECTION_REFUSED): WebTransport sessions open fewer at once.
	par := 128
	if c.Proto == "wt" {
		par = 16
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := 0; i < c.Conns; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if c.Proto == "wt" {
				t, err := targetWT(ctx, c.Addr)
				var wc *wtConn
				if err == nil {
					wc, err = t.subscribe(ctx, c.Topic)
				}
				if err != nil {
					if failed.Add(1) == 1 {
						fmt.Fprintf(os.Stderr, "  first failure: %v\n", err)
					}
					return
				}
				conns.Store(i, closerFunc(wc.close))
				opened.Add(1)
				return
			}
			conn, err := src.dial(ctx, target)
			if err == nil {
				switch c.Proto {
				case "mqtt":
					err = mqttHandshake(conn, fmt.Sprintf("idle-%d-%d", os.Getpid(), i), c.Version)
					if err == nil && c.Subscribe {
						err = mqtt311Subscribe(conn, fmt.Sprintf("%s/%d", c.Topic, i))
					}
				case "sse":
					err = sseHandshake(conn, c.Addr, c.Topic)
				default:
					err = wsHandshake(conn, c.Addr, c.Topic)
				}
			}
			if err != nil {
				failed.Add(1)
				if conn != nil {
					conn.Close()
				}
				return
			}
			conns.Store(i, conn)
			if n := opened.Add(1); n%5000 == 0 {
				fmt.Fprintf(os.Stderr, "  %d open\n", n)
			}
		}(i)
	}
	wg.Wait()
	openSecs := time.Since(start).Seconds()
	time.Sleep(c.Hold)
	after, _ := readProc(c.PID)
	res := IdleResult{Name: c.Name, Proto: c.Proto, Conns: c.Conns, Opened: opened.Load(), FailedConnect: failed.Load(),
		RSSBeforeB: before.RSSBytes, RSSAfterB: after.RSSBytes, OpenSeconds: openSecs}
	if res.Opened > 0 {
		res.BytesPerConn = float64(after.RSSBytes-before.RSSBytes) / float64(res.Opened)
	}
	conns.Range(func(_, v any) bool { v.(io.Closer).Close(); return true })
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// closerFunc is a close function as an io.Closer.
type closerFunc func()

func (f closerFunc) Close() error { f(); return nil }

// mqttHandshake sends CONNECT (keep alive 0: no pings while idle) and
// waits for a successful CONNACK.
func mqttHandshake(conn net.Conn, id string, version byte) error {
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer conn.SetDeadline(time.Time{})
	if version == 4 {
		return mqtt311Handshake(conn, id)
	}
	cp := packets.NewControlPacket(packets.CONNECT)
	cc := cp.Content.(*packets.Connect)
	cc.ProtocolName, cc.ProtocolVersion, cc.ClientID, cc.CleanStart, cc.KeepAlive = "MQTT", version, id, true, 0
	if _, err := cp.WriteTo(conn); err != nil {
		return err
	}
	resp, err := packets.ReadPacket(conn)
	if err != nil {
		return err
	}
	ack, ok := resp.Content.(*packets.Connack)
	if !ok || ack.ReasonCode != 0 {
		return fmt.Errorf("no successful CONNACK")
	}
	return nil
}

// sseHandshake sends GET /sse and reads the response head and first line.
func sseHandshake(conn net.Conn, base, topic string) error {
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer conn.SetDeadline(time.Time{})
	u, _ := url.Parse(base)
	fmt.Fprintf(conn, "GET /sse?topic=%s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", url.QueryEscape(topic), u.Host)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /sse: %s", resp.Status)
	}
	// The stream's first line (retry:) comes once live interest is in effect.
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "retry:") {
		return fmt.Errorf("unexpected first line %q", line)
	}
	return nil
}

// wsHandshake upgrades GET /ws, subscribes to topic and waits for the ack.
// It speaks the few bytes of RFC 6455 it needs on the raw connection, so
// that the load generator holds no WebSocket library state per connection.
// Server pings go unanswered: a run must end within the edge's idle timeout.
func wsHandshake(conn net.Conn, base, topic string) error {
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer conn.SetDeadline(time.Time{})
	u, _ := url.Parse(base)
	var key [16]byte
	_, _ = rand.Read(key[:])
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", u.Host, base64.StdEncoding.EncodeToString(key[:]))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("GET /ws: %s", resp.Status)
	}
	req, _ := json.Marshal(map[string]string{"op": "subscribe", "id": "1", "topic": topic})
	if len(req) > 125 {
		return fmt.Errorf("topic too long")
	}
	// A client frame: FIN + text, masked, 7-bit length.
	frame := []byte{0x81, 0x80 | byte(len(req)), 0, 0, 0, 0}
	_, _ = rand.Read(frame[2:6])
	for i, b := range req {
		frame = append(frame, b^frame[2+i%4])
	}
	if _, err := conn.Write(frame); err != nil {
		return err
	}
	var head [2]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return err
	}
	if head[0] != 0x81 || head[1] >= 126 {
		return fmt.Errorf("unexpected frame head % x", head)
	}
	body := make([]byte, head[1])
	if _, err := io.ReadFull(br, body); err != nil {
		return err
	}
	var ack struct{ Type, ID string }
	if err := json.Unmarshal(body, &ack); err != nil || ack.Type != "ack" || ack.ID != "1" {
		return fmt.Errorf("no subscribe ack: %s", body)
	}
	return nil
}

// mqtt311Handshake speaks the few bytes of an MQTT 3.1.1 CONNECT/CONNACK
// (the paho.golang codec is MQTT 5 only): clean session, keep alive 0.
func mqtt311Handshake(conn net.Conn, id string) error {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, byte(len(id) >> 8), byte(len(id))}
	ack, err := mqtt311Exchange(conn, 0x10, append(body, id...), 4)
	if err == nil && (ack[0] != 0x20 || ack[3] != 0) {
		err = fmt.Errorf("CONNACK refused: % x", ack)
	}
	return err
}

// mqtt311Subscribe subscribes at QoS 1 to filter and waits for a SUBACK
// granting it.
func mqtt311Subscribe(conn net.Conn, filter string) error {
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer conn.SetDeadline(time.Time{})
	body := []byte{0, 1, byte(len(filter) >> 8), byte(len(filter))}
	ack, err := mqtt311Exchange(conn, 0x82, append(append(body, filter...), 1), 5)
	if err == nil && (ack[0] != 0x90 || ack[4] > 2) {
		err = fmt.Errorf("SUBACK refused: % x", ack)
	}
	return err
}

// mqtt311Exchange sends a packet of the given first byte and body (short:
// under 128 bytes) and reads the answer's first n bytes.
func mqtt311Exchange(conn net.Conn, first byte, body []byte, n int) ([]byte, error) {
	if len(body) > 127 {
		return nil, fmt.Errorf("packet too long")
	}
	if _, err := conn.Write(append([]byte{first, byte(len(body))}, body...)); err != nil {
		return nil, err
	}
	ack := make([]byte, n)
	_, err := io.ReadFull(conn, ack)
	return ack, err
}
