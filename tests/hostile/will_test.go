package hostile

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// TestWillIsAPublish ensures a CONNECT's will is judged as a PUBLISH of
// its topic, payload and flags would be: outside the key's capabilities
// ("b/…", "$SYS/…") CONNACK 0x87, over the tenant's payload limit 0x95,
// over its message rate 0x97, MQTT 3.1.1 return code 5 for each; and that
// a refused will is never published: a subscriber to everything sees the
// admitted will first.
func TestWillIsAPublish(t *testing.T) {
	if err := admin(http.MethodPost, "/v1/tenants", map[string]any{"id": "wills",
		"limits": map[string]any{"maxPayloadBytes": "100"}}, nil); err != nil {
		t.Fatal(err)
	}
	_, limited := createKey(t, "wills", grant("a/#", "publish", "subscribe"))
	_, watcher := createKey(t, "wills", grant("#", "subscribe"), grant("$SYS/#", "subscribe"))
	sub, err := connectV5(srv.MQTT, "will-watcher", "", watcher, nil)
	if err != nil || sub.code != 0 {
		t.Fatalf("watcher: %v %v", sub, err)
	}
	defer sub.Close()
	if codes, _, err := sub.subscribe(1, "#", "$SYS/#"); err != nil || !bytes.Equal(codes, []byte{1, 1}) {
		t.Fatalf("watcher SUBACK % x, %v", codes, err)
	}
	will := func(topic string, payload []byte, qos byte, retain bool) func(*packets.Connect) {
		return func(cn *packets.Connect) {
			cn.WillFlag, cn.WillTopic, cn.WillMessage, cn.WillQOS, cn.WillRetain = true, topic, payload, qos, retain
			cn.WillProperties = &packets.Properties{}
		}
	}
	for _, row := range []struct {
		name string
		set  func(*packets.Connect)
		code byte
	}{
		{"will on b/x, outside a/#", will("b/x", []byte("w"), 1, false), 0x87},
		{"retained will on $SYS/x", will("$SYS/x", []byte("w"), 0, true), 0x87},
		{"QoS 2 will on b/deep/topic", will("b/deep/topic", []byte("w"), 2, false), 0x87},
		{"will of 5,000 bytes over the 100-byte payload limit", will("a/big", make([]byte, 5000), 1, false), 0x95},
	} {
		t.Run(row.name, func(t *testing.T) {
			c, err := connectV5(srv.MQTT, "will-refused", "", limited, row.set)
			if err != nil {
				t.Fatal(err)
			}
			// Closed without DISCONNECT: a will that had been accepted
			// would fire now.
			c.Close()
			if c.code != row.code {
				t.Fatalf("CONNACK %#x, want %#x", c.code, row.code)
			}
		})
	}
	t.Run("MQTT 3.1.1 will on b/x: return code 5", func(t *testing.T) {
		c, err := connectV3Will(srv.MQTT, "", "will-refused-3", limited, "b/x", []byte("w"))
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if c.code != 0x05 {
			t.Fatalf("return code %#x, want 5", c.code)
		}
	})
	t.Run("will on a/x (control): admitted, fired on an abrupt close", func(t *testing.T) {
		c, err := connectV5(srv.MQTT, "will-ok", "", limited, will("a/x", []byte("gone"), 1, false))
		if err != nil || c.code != 0 {
			t.Fatalf("CONNACK %v, %v", c, err)
		}
		c.Close()
		// The first message the watcher gets is this will: none of the
		// refused ones was published before it.
		for {
			pk, err := sub.read(10 * time.Second)
			if err != nil {
				t.Fatalf("no will: %v", err)
			}
			if p, ok := pk.Content.(*packets.Publish); ok {
				if p.Topic != "a/x" || string(p.Payload) != "gone" {
					t.Fatalf("watcher got %s %q first, want the will on a/x", p.Topic, p.Payload)
				}
				return
			}
		}
	})
}

// TestWillRate ensures a will counts against the tenant's message rate
// when it is set: CONNECTs with wills beyond the rate get CONNACK 0x97.
func TestWillRate(t *testing.T) {
	if err := admin(http.MethodPost, "/v1/tenants", map[string]any{"id": "willrate",
		"limits": map[string]any{"maxMessagesPerSecond": "1"}}, nil); err != nil {
		t.Fatal(err)
	}
	_, key := createKey(t, "willrate", grant("a/#", "publish"))
	var codes []string
	for i := range 20 {
		c, err := connectV5(srv.MQTT, fmt.Sprint("will-rate-", i), "", key, func(cn *packets.Connect) {
			cn.WillFlag, cn.WillTopic, cn.WillMessage, cn.WillProperties = true, "a/will", []byte("w"), &packets.Properties{}
		})
		if err != nil {
			t.Fatal(err)
		}
		// A normal DISCONNECT discards the will: only CONNECTs spend.
		_ = c.write(packets.NewControlPacket(packets.DISCONNECT))
		c.Close()
		codes = append(codes, fmt.Sprintf("%#x", c.code))
		if c.code == 0x97 {
			t.Logf("CONNACK codes %s", strings.Join(codes, " "))
			return
		}
		if c.code != 0 {
			t.Fatalf("CONNACK %#x, want 0 or 0x97", c.code)
		}
	}
	t.Fatalf("20 wills at a rate of 1 message per second, none refused: %s", strings.Join(codes, " "))
}
