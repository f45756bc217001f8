package mqtt

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/mochi-mqtt/server/v2/packets"
)

// leaveAll asks every client of e to leave, as a drain does.
func (e *env) leaveAll(reference string) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for _, leave := range e.srv.Leavers(reference) {
		leave(ctx)
	}
}

// connectRaw opens a session that outlives its connection: MQTT 5 with an
// expiry interval, MQTT 3.1.1 without clean session.
func connectRaw(t *testing.T, e *env, version byte, clientID string, resume bool) (*raw, *packets.Packet) {
	t.Helper()
	r := e.raw()
	r.version = version
	pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Keepalive: 30, ClientIdentifier: clientID}}
	if version == 5 {
		pk.Connect.Clean = !resume
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 300, true
	}
	r.sendPacket(pk)
	ack := r.expect(packets.Connack)
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %#x", ack.ReasonCode)
	}
	return r, ack
}

// TestDrainLeave ensures a drained client is told why in its protocol
// (MQTT 5: DISCONNECT 0x8B, or 0x9C with the server reference; 3.1.1: the
// connection closes) after its session was saved, and that the session,
// with its unacknowledged QoS 1 message, resumes on another edge.
func TestDrainLeave(t *testing.T) {
	for _, tc := range []struct {
		name      string
		version   byte
		reference string
		want      byte // DISCONNECT reason code; 0: none
	}{
		{name: "mqtt5", version: 5, want: codeServerShuttingDown},
		{name: "mqtt5 server reference", version: 5, reference: "edge-b.example:1883", want: codeUseAnotherServer},
		{name: "mqtt3.1.1", version: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, st := twoEdges(t)
			r, _ := connectRaw(t, a, tc.version, "leaver", false)
			r.subscribe(packets.Subscription{Filter: "drain/#", Qos: 1})
			a.v5("pub").publish(t, &paho.Publish{Topic: "drain/1", QoS: 1, Payload: []byte("m1")})
			if pk := r.expect(packets.Publish); string(pk.Payload) != "m1" {
				t.Fatalf("got %q", pk.Payload)
			}
			// Not acknowledged: in flight when the edge drains.
			a.leaveAll(tc.reference)

			var disconnect *packets.Packet
			for {
				pk, err := r.tryRead()
				if err != nil {
					break
				}
				if pk.FixedHeader.Type == packets.Disconnect {
					disconnect = pk
				}
			}
			switch {
			case tc.want == 0 && disconnect != nil:
				t.Fatalf("MQTT 3.1.1 client sent a DISCONNECT %+v", disconnect)
			case tc.want != 0 && (disconnect == nil || disconnect.ReasonCode != tc.want):
				t.Fatalf("DISCONNECT %+v, want reason %#x", disconnect, tc.want)
			case tc.want != 0 && !strings.Contains(disconnect.Properties.ReasonString, "server"):
				t.Fatalf("reason string %q", disconnect.Properties.ReasonString)
			case disconnect != nil && disconnect.Properties.ServerReference != tc.reference:
				t.Fatalf("server reference %q, want %q", disconnect.Properties.ServerReference, tc.reference)
			}
			rec := waitRecord(t, st, "leaver", func(s *store.Session) bool { return !s.DisconnectedAt.IsZero() })
			if len(rec.Subscriptions) != 1 || len(rec.Inflight) != 1 {
				t.Fatalf("saved %+v", rec)
			}

			r2, ack := connectRaw(t, b, tc.version, "leaver", true)
			if !ack.SessionPresent {
				t.Fatal("session not present on the other edge")
			}
			pk := r2.expect(packets.Publish)
			if string(pk.Payload) != "m1" || !pk.FixedHeader.Dup {
				t.Fatalf("resumed with %q dup=%v, want m1 again with DUP", pk.Payload, pk.FixedHeader.Dup)
			}
		})
	}
}

// TestDrainPahoSeesShuttingDown ensures a Paho MQTT 5 client of a drained
// edge receives DISCONNECT 0x8B with a reason string.
func TestDrainPahoSeesShuttingDown(t *testing.T) {
	e := newEnv(t)
	c := e.v5("paho-drained")
	e.leaveAll("")
	select {
	case d := <-c.disconnects:
		if d.ReasonCode != codeServerShuttingDown || d.Properties == nil || d.Properties.ReasonString == "" {
			t.Fatalf("DISCONNECT %#x %+v", d.ReasonCode, d.Properties)
		}
	case <-time.After(waitFor):
		t.Fatal("no DISCONNECT")
	}
}

// TestDrainRefusesNewClients ensures a draining server takes no new
// client: its listener is closed, and a CONNECT that still reaches it is
// answered server unavailable (MQTT 5: 0x88; 3.1.1: return code 3).
func TestDrainRefusesNewClients(t *testing.T) {
	e := newEnv(t)
	e.v5("early") // the listener is being served
	e.srv.Drain()
	if c, err := net.Dial("tcp", e.addr); err == nil {
		c.Close()
		t.Fatal("the listener still accepts")
	}
	for _, tc := range []struct {
		version byte
		want    byte
	}{{5, codeServerUnavailable}, {4, 3}} {
		client, server := net.Pipe()
		e.srv.wg.Add(1)
		go func() {
			defer e.srv.wg.Done()
			e.srv.serveConn(context.Background(), server, true)
		}()
		r := &raw{t: t, c: client, r: bufio.NewReader(client), version: tc.version}
		r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "late"}})
		if ack := r.expect(packets.Connack); ack.ReasonCode != tc.want {
			t.Errorf("MQTT level %d: CONNACK %#x, want %#x", tc.version, ack.ReasonCode, tc.want)
		}
		client.Close()
	}
}
