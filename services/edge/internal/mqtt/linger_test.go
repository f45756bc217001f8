package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// dialTCP and dialWebSocket open a client's byte stream to e: over
// WebSocket each write is one binary message, and a read returns io.EOF
// only after the server's close frame (any other end is an error).
func (e *env) dialTCP(t *testing.T) net.Conn {
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) dialWebSocket(t *testing.T) net.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, e.wsURL, &websocket.DialOptions{Subprotocols: []string{subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(-1)
	return websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
}

// pingFlood is what a client writes while the server closes: PINGREQs,
// 512 bytes every 100 µs at most (much faster, a client would pass the bytes the
// server reads while it lingers before it could read the reason).
var pingFlood = func() []byte {
	b := make([]byte, 0, 512)
	for len(b) < cap(b) {
		b = append(b, packets.Pingreq<<4, 0)
	}
	return b
}()

// lingerOutcome is what a flooding client saw: the reason code of the
// CONNACK or DISCONNECT it read (found), how its reading ended, and
// whether a write failed before it had read that reason.
type lingerOutcome struct {
	transport  string
	found      bool
	reason     byte
	readEnd    error
	writeFirst error
}

// flood writes first, then PINGREQs without end, on conn while reading
// every packet the server sends until the connection ends; trigger (if
// set) runs once the flood is under way, and has returned when flood
// does. It stops writing when reading ends.
func flood(t *testing.T, conn net.Conn, version byte, first []byte, trigger func()) lingerOutcome {
	t.Helper()
	defer conn.Close()
	var (
		mu  sync.Mutex
		out lingerOutcome
	)
	stop := make(chan struct{})
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for b := first; ; b = pingFlood {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := conn.Write(b); err != nil {
				mu.Lock()
				if !out.found {
					out.writeFirst = err
				}
				mu.Unlock()
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	r := &raw{t: t, c: conn, r: bufio.NewReader(conn), version: version}
	triggered := trigger == nil
	triggerDone := make(chan struct{})
	if triggered {
		close(triggerDone)
	}
	deadline := time.Now().Add(waitFor)
	for {
		pk, err := r.tryRead()
		if err == nil && time.Now().After(deadline) {
			err = fmt.Errorf("connection still open after %s", waitFor)
		}
		if err != nil {
			mu.Lock()
			out.readEnd = err
			mu.Unlock()
			break
		}
		typ := pk.FixedHeader.Type
		switch {
		case typ == packets.Pingresp && !triggered:
			triggered = true
			go func() {
				defer close(triggerDone)
				trigger()
			}()
		case typ == packets.Disconnect, typ == packets.Connack && pk.ReasonCode != 0:
			mu.Lock()
			out.found, out.reason = true, pk.ReasonCode
			mu.Unlock()
		}
	}
	close(stop)
	<-wrote
	if triggered {
		<-triggerDone
	}
	mu.Lock()
	defer mu.Unlock()
	return out
}

// TestLingeringClose ensures a client that is still sending when the
// server refuses it (CONNACK) or ends its connection with a reason
// (DISCONNECT) reads that reason and then the end of the stream — over TCP
// a FIN, never a reset; over WebSocket the close frame — and that its own
// writes do not fail before it read the reason: the server stops writing
// after its last packet, keeps reading (and discarding) what still comes
// for a bounded time, then closes.
func TestLingeringClose(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *node.Config) { c.ReceiveMaximum = 2; c.MaxPacketSize = 4096 })
	connect := func(v byte, clientID string, ps packets.Properties) []byte {
		pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: v,
			Connect:    packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: clientID},
			Properties: ps}
		var b bytes.Buffer
		if err := pk.ConnectEncode(&b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	qos2 := func(n int) []byte {
		var b bytes.Buffer
		for id := range n {
			pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, ProtocolVersion: 5,
				TopicName: "linger", PacketID: uint16(id + 1), Payload: []byte("x")}
			if err := pk.PublishEncode(&b); err != nil {
				t.Fatal(err)
			}
		}
		return b.Bytes()
	}
	tooLarge := append(appendVarInt([]byte{packets.Publish << 4}, 8000), make([]byte, 8000)...)
	badConnect := rawConnect{v: 5, flags: flagClean, props: props(prop(17, four...), prop(17, four...))}.bytes()
	v3NoClientID := connect(4, "", packets.Properties{})
	v3NoClientID[9] &^= flagClean // clean session 0 without a client identifier: return code 2

	for _, tc := range []struct {
		name    string
		version byte
		connect bool   // CONNECT (accepted) first
		first   []byte // then this
		trigger func(clientID string)
		reason  byte
	}{
		{"CONNACK 0x8C", 5, false, connect(5, "", packets.Properties{AuthenticationMethod: "SCRAM"}), nil, codeBadAuthMethod},
		{"CONNACK 0x82", 5, false, badConnect, nil, codeProtocolError},
		{"CONNACK 3.1.1 code 2", 4, false, v3NoClientID, nil, 0x02},
		{"DISCONNECT 0x93", 5, true, qos2(3), nil, codeReceiveMaxExceeded},
		{"DISCONNECT 0x95", 5, true, tooLarge, nil, codePacketTooLarge},
		{"DISCONNECT 0x81", 5, true, []byte{0x36, 0x06, 0x00, 0x01, 'a', 0x00, 0x01, 0x00}, nil, codeMalformed},
		{"DISCONNECT 0x8E", 5, true, nil, func(id string) {
			r := e.raw()
			r.connectAs(id, 30, packets.Properties{})
		}, codeSessionTakenOver},
		{"DISCONNECT 0x9C", 5, true, nil, func(string) { e.srv.Redirect("elsewhere:1883", false) }, codeUseAnotherServer},
		{"DISCONNECT 0x8B", 5, true, nil, func(string) { e.leaveAll("") }, codeServerShuttingDown},
	} {
		for _, transport := range []string{"tcp", "websocket"} {
			t.Run(tc.name+" "+transport, func(t *testing.T) {
				conn := e.dialTCP(t)
				if transport == "websocket" {
					conn.Close()
					conn = e.dialWebSocket(t)
				}
				clientID := "linger-" + transport + "-" + tc.name
				var trigger func()
				if tc.trigger != nil {
					trigger = func() { tc.trigger(clientID) }
				}
				if tc.connect {
					if _, err := conn.Write(connect(tc.version, clientID, packets.Properties{})); err != nil {
						t.Fatal(err)
					}
					// The CONNACK is read by flood with the rest: a success
					// code is not a reason.
				}
				out := flood(t, conn, tc.version, tc.first, trigger)
				if !out.found || out.reason != tc.reason {
					t.Fatalf("reason %#x read: %v, want %#x (reading ended with %v)", out.reason, out.found, tc.reason, out.readEnd)
				}
				if out.writeFirst != nil {
					t.Fatalf("a write failed before the reason was read: %v", out.writeFirst)
				}
				if out.readEnd != io.EOF {
					t.Fatalf("after the reason the stream ended with %v, want the end of the stream (EOF)", out.readEnd)
				}
			})
		}
	}
}

// TestCloseTellsWebSocketClients ensures Close, the server's shutdown,
// reaches MQTT 5 clients over WebSocket as over TCP: DISCONNECT 0x8B, then
// the end of the stream (the WebSocket close frame), even to a client
// still sending.
func TestCloseTellsWebSocketClients(t *testing.T) {
	e := newEnv(t)
	transports := []string{"tcp", "websocket"}
	outcomes := make(chan lingerOutcome, len(transports))
	ready := make(chan struct{}, len(transports))
	for _, transport := range transports {
		conn := e.dialTCP(t)
		if transport == "websocket" {
			conn.Close()
			conn = e.dialWebSocket(t)
		}
		connect := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "closing-" + transport}}
		var b bytes.Buffer
		if err := connect.ConnectEncode(&b); err != nil {
			t.Fatal(err)
		}
		go func() {
			out := flood(t, conn, 5, b.Bytes(), func() { ready <- struct{}{} })
			out.transport = transport
			outcomes <- out
		}()
	}
	for range transports {
		<-ready
	}
	e.srv.Close()
	for range transports {
		out := <-outcomes
		if !out.found || out.reason != codeServerShuttingDown || out.readEnd != io.EOF {
			t.Errorf("%s: reason %#x read: %v, stream ended with %v; want 0x8B, then the end of the stream",
				out.transport, out.reason, out.found, out.readEnd)
		}
	}
}
