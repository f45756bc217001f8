package hostile

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// Defaults of the edge these outcomes follow from (services/edge/internal/mqtt
// Config and pkg/topic.DefaultLimits); the tests do not depend on their
// exact values beyond the margins below.
const (
	maxPacketSize  = 1 << 20
	connectTimeout = 10 * time.Second
	maxKeepAlive   = 20 * time.Minute
	maxTopicLevels = 32
	maxTopicLength = 1024
	// subscriptionLimit is acme's MaxSubscriptionsPerConnection (setup).
	subscriptionLimit = 1000
)

// TestMQTTHostile ensures each malformed, oversized or abusive MQTT input
// gets its refusal — the CONNACK, PUBACK, SUBACK or DISCONNECT reason code
// in the name of the row, the connection closed where the row says so —
// and that the server keeps serving (checked after every row).
func TestMQTTHostile(t *testing.T) {
	rows := []struct {
		name string
		slow bool // waits for a server timeout: run in parallel
		run  func(t *testing.T)
	}{
		{"remaining length over 4 bytes before CONNECT: closed", false, func(t *testing.T) {
			c := raw(t)
			_, _ = c.Write([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f})
			mustClose(t, c)
		}},
		{"CONNECT v5 with an unknown property: CONNACK 0x81, closed, no session", false, func(t *testing.T) {
			c := raw(t)
			body := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 30, 2, 0x7f, 0x00}
			body = appendString(body, "x")
			_, _ = c.Write(append(fixedHeader(0x10, len(body)), body...))
			// MQTT 5 §4.13.1: the server may tell why before it closes;
			// the edge does.
			pk, err := c.read(5 * time.Second)
			if err != nil {
				t.Fatalf("no CONNACK: %v", err)
			}
			if ack, ok := pk.Content.(*packets.Connack); !ok || ack.ReasonCode != 0x81 {
				t.Fatalf("got %v, want CONNACK 0x81", pk)
			}
			mustClose(t, c)
		}},
		{"CONNECT over the maximum packet size: CONNACK 0x95 or closed unread", false, func(t *testing.T) {
			c := raw(t)
			// Only the header is sent: the server must refuse on the
			// declared length, before reading (or allocating) the body.
			_, _ = c.Write(fixedHeader(0x10, maxPacketSize+1))
			_, _ = c.Write([]byte{0, 4, 'M', 'Q', 'T', 'T', 5})
			if pk, err := c.read(5 * time.Second); err == nil {
				ack, ok := pk.Content.(*packets.Connack)
				if !ok || ack.ReasonCode != 0x95 {
					t.Fatalf("got %v, want CONNACK 0x95 or nothing", pk)
				}
			}
			mustClose(t, c)
		}},
		{"PUBLISH over the maximum packet size: DISCONNECT 0x95, closed", false, func(t *testing.T) {
			c := connected(t, "big-pub")
			_, _ = c.Write(fixedHeader(0x32, maxPacketSize+1))
			wantDisconnect(t, c, 0x95)
		}},
		{"PUBLISH with QoS 3: DISCONNECT 0x81, closed", false, func(t *testing.T) {
			c := connected(t, "qos3")
			body := appendString(nil, "a/b")
			body = append(body, 0, 1, 0) // packet id, no properties
			_, _ = c.Write(append(fixedHeader(0x36, len(body)), body...))
			wantDisconnect(t, c, 0x81)
		}},
		{"user property flood over the packet size: refused 0x95, closed", false, func(t *testing.T) {
			c, err := connectV5(srv.MQTT, "flood-big", "", acmeKey, func(cn *packets.Connect) {
				cn.Properties.User = userProps(maxPacketSize / 10)
			})
			if err == nil {
				defer c.Close()
				if c.code != 0x95 {
					t.Fatalf("CONNACK %#x, want 0x95", c.code)
				}
				mustClose(t, c)
			} // else closed before any CONNACK: also a refusal
		}},
		{"user property flood within the packet size: admitted, bounded by the packet", false, func(t *testing.T) {
			c, err := connectV5(srv.MQTT, "flood-ok", "", acmeKey, func(cn *packets.Connect) {
				cn.Properties.User = userProps(10000)
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.code != 0 {
				t.Fatalf("CONNACK %#x, want success", c.code)
			}
		}},
		{"publish topic with invalid UTF-8: 0x90 or DISCONNECT 0x81", false, func(t *testing.T) {
			c := connected(t, "utf8")
			code, disc, err := c.publish("a/\xff\xfe", []byte("x"), 1)
			if err != nil {
				t.Fatal(err)
			}
			if !(code == 0x90 || (disc && code == 0x81)) {
				t.Fatalf("reason %#x (disconnect %v), want PUBACK 0x90 or DISCONNECT 0x81", code, disc)
			}
			t.Logf("reason %#x, disconnect %v", code, disc)
		}},
		{"publish topic with a wildcard: PUBACK 0x90 or DISCONNECT 0x90/0x82", false, func(t *testing.T) {
			for i, topic := range []string{"a/+/b", "a/#", "#"} {
				c := connected(t, fmt.Sprint("wild", i))
				code, disc, err := c.publish(topic, []byte("x"), 1)
				if err != nil {
					t.Fatal(err)
				}
				if !(code == 0x90 || (disc && code == 0x82)) {
					t.Fatalf("%q: reason %#x (disconnect %v), want 0x90 or DISCONNECT 0x82", topic, code, disc)
				}
				t.Logf("%q: reason %#x, disconnect %v", topic, code, disc)
			}
		}},
		{"publish topic deeper than the level limit: PUBACK 0x90", false, func(t *testing.T) {
			c := connected(t, "deep")
			code, _, err := c.publish(strings.Repeat("a/", maxTopicLevels)+"a", []byte("x"), 1)
			if err != nil || code != 0x90 {
				t.Fatalf("reason %#x, %v; want 0x90", code, err)
			}
		}},
		{"publish topic longer than the length limit: PUBACK 0x90", false, func(t *testing.T) {
			c := connected(t, "long")
			code, _, err := c.publish(strings.Repeat("x", maxTopicLength+1), []byte("x"), 1)
			if err != nil || code != 0x90 {
				t.Fatalf("reason %#x, %v; want 0x90", code, err)
			}
		}},
		{"subscribe filter deeper than the level limit: SUBACK 0x8F", false, func(t *testing.T) {
			c := connected(t, "deepsub")
			codes, disc, err := c.subscribe(1, strings.Repeat("+/", maxTopicLevels)+"#", "ok/#")
			if err != nil || disc != nil || len(codes) != 2 || codes[0] != 0x8F || codes[1] != 0x01 {
				t.Fatalf("codes % x (disconnect %v), %v; want 8f 01", codes, disc, err)
			}
		}},
		{"CONNECT never sent (slowloris): closed after the connect timeout", true, func(t *testing.T) {
			c := raw(t)
			start := time.Now()
			if !c.closedAfter(connectTimeout + 5*time.Second) {
				t.Fatalf("still open after %v", time.Since(start))
			}
			if d := time.Since(start); d < connectTimeout/2 {
				t.Fatalf("closed after %v, before the connect timeout", d)
			}
		}},
		{"half a CONNECT, then silence (slowloris): closed after the connect timeout", true, func(t *testing.T) {
			c := raw(t)
			_, _ = c.Write([]byte{0x10, 40, 0, 4, 'M', 'Q'})
			if !c.closedAfter(connectTimeout + 5*time.Second) {
				t.Fatal("still open")
			}
		}},
		{"keep alive 0 (v5): told Server Keep Alive, capped", false, func(t *testing.T) {
			c, err := connectV5(srv.MQTT, "ka0", "", acmeKey, func(cn *packets.Connect) { cn.KeepAlive = 0 })
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			wantServerKeepAlive(t, c)
		}},
		{"keep alive 65535 s (v5): told Server Keep Alive, capped", false, func(t *testing.T) {
			c, err := connectV5(srv.MQTT, "kamax", "", acmeKey, func(cn *packets.Connect) { cn.KeepAlive = 65535 })
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			wantServerKeepAlive(t, c)
		}},
		{"subscribe storm, 100k filters on one connection: granted up to the limit, 0x97 beyond", false, func(t *testing.T) {
			c := connected(t, "storm")
			const packetsN, perPacket = 100, 1000
			granted, quota := 0, 0
			for p := range packetsN {
				filters := make([]string, perPacket)
				for i := range filters {
					filters[i] = fmt.Sprintf("storm/%d/%d", p, i)
				}
				codes, disc, err := c.subscribe(uint16(p+1), filters...)
				if err != nil || disc != nil {
					t.Fatalf("SUBSCRIBE %d: disconnect %v, %v", p, disc, err)
				}
				for _, code := range codes {
					switch code {
					case 0x01:
						granted++
					case 0x97:
						quota++
					default:
						t.Fatalf("reason %#x", code)
					}
				}
			}
			if granted != subscriptionLimit || quota != packetsN*perPacket-subscriptionLimit {
				t.Fatalf("%d granted, %d refused with 0x97; want %d granted", granted, quota, subscriptionLimit)
			}
		}},
		{"# does not match $-topics: a $-topic publish never reaches a # subscriber", false, func(t *testing.T) {
			sub := connected(t, "dollar-sub")
			if codes, _, err := sub.subscribe(1, "#"); err != nil || len(codes) != 1 || codes[0] >= 0x80 {
				t.Fatalf("subscribe #: % x %v", codes, err)
			}
			pub := connected(t, "dollar-pub")
			// A key whose capability is "#" may not publish to $-topics
			// either ("#" does not cover them): 0x87. Were it accepted, the
			// "#" subscriber must still not receive it.
			code, _, err := pub.publish("$x/secret", []byte("x"), 1)
			if err != nil || (code != 0 && code != 0x87) {
				t.Fatalf("publish $x/secret: %#x, %v", code, err)
			}
			if code, _, err := pub.publish("plain/after", []byte("x"), 2); err != nil || code != 0 {
				t.Fatalf("publish plain/after: %#x, %v", code, err)
			}
			if got := nextPublish(sub, 5*time.Second); got != "plain/after" {
				t.Fatalf("# subscriber got %q first, want plain/after", got)
			}
		}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			if row.slow {
				t.Parallel()
			}
			row.run(t)
			if err := srv.alive(); err != nil {
				t.Fatalf("server after the attack: %v", err)
			}
		})
	}
}

// raw dials the MQTT port without sending anything.
func raw(t *testing.T) *mqttConn {
	t.Helper()
	c, err := dialMQTT(srv.MQTT, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connected returns an MQTT 5 connection of acme, connected.
func connected(t *testing.T, id string) *mqttConn {
	t.Helper()
	c, err := connectV5(srv.MQTT, id, "", acmeKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if c.code != 0 {
		t.Fatalf("CONNACK %#x", c.code)
	}
	return c
}

func mustClose(t *testing.T, c *mqttConn) {
	t.Helper()
	if !c.closedAfter(5 * time.Second) {
		t.Fatal("connection still open")
	}
}

func wantDisconnect(t *testing.T, c *mqttConn, code byte) {
	t.Helper()
	got, err := c.disconnectCode(5 * time.Second)
	if err != nil {
		t.Fatalf("no DISCONNECT: %v", err)
	}
	if got != code {
		t.Fatalf("DISCONNECT %#x, want %#x", got, code)
	}
	mustClose(t, c)
}

func wantServerKeepAlive(t *testing.T, c *mqttConn) {
	t.Helper()
	if c.code != 0 {
		t.Fatalf("CONNACK %#x", c.code)
	}
	ka := c.connack.Properties
	if ka == nil || ka.ServerKeepAlive == nil || *ka.ServerKeepAlive == 0 || time.Duration(*ka.ServerKeepAlive)*time.Second > maxKeepAlive {
		t.Fatalf("Server Keep Alive %v, want one within (0, %v]", ka, maxKeepAlive)
	}
}

// nextPublish returns the topic of the next PUBLISH within d, "" if none.
func nextPublish(c *mqttConn, d time.Duration) string {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		pk, err := c.read(time.Until(deadline))
		if err != nil {
			return ""
		}
		if p, ok := pk.Content.(*packets.Publish); ok {
			return p.Topic
		}
	}
	return ""
}

func userProps(n int) []packets.User {
	u := make([]packets.User, n)
	for i := range u {
		u[i] = packets.User{Key: "k", Value: fmt.Sprintf("v%08d", i)}
	}
	return u
}
