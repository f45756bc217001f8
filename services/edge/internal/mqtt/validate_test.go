package mqtt

import (
	"context"
	"fmt"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// CONNECT flags (MQTT §3.1.2.3).
const (
	flagClean      = 0x02
	flagWill       = 0x04
	flagWillQoS1   = 0x08
	flagWillRetain = 0x20
	flagPassword   = 0x40
	flagUsername   = 0x80
)

// prop encodes one MQTT 5 property: its identifier, then its value bytes.
func prop(id byte, value ...byte) []byte { return append([]byte{id}, value...) }

// props encodes a property block: its length, then the properties.
func props(ps ...[]byte) []byte {
	var b []byte
	for _, p := range ps {
		b = append(b, p...)
	}
	return append(appendVarInt(nil, len(b)), b...)
}

// rawString encodes an MQTT string.
func rawString(s string) []byte { return appendString(nil, s) }

// rawConnect is a CONNECT encoded by hand, as a client that breaks the
// rules would send it: protocol level v, the flags as given, and for MQTT
// 5 the property block and, with a will, the will's. The will is topic
// "w" with willPayload; the user name "u" and password go with their flags.
type rawConnect struct {
	v, flags          byte
	props, willProps  []byte
	willPayload, pass string
}

func (rc rawConnect) bytes() []byte {
	body := append(rawString("MQTT"), rc.v, rc.flags, 0, 30)
	if rc.v == 5 {
		body = append(body, rc.props...)
	}
	body = append(body, rawString(fmt.Sprintf("malformed-%d", rawClients.Add(1)))...)
	if rc.flags&flagWill != 0 {
		if rc.v == 5 {
			body = append(body, rc.willProps...)
		}
		body = append(append(body, rawString("w")...), rawString(rc.willPayload)...)
	}
	if rc.flags&flagUsername != 0 {
		body = append(body, rawString("u")...)
	}
	if rc.flags&flagPassword != 0 {
		body = append(body, rawString(rc.pass)...)
	}
	return packetBytes(packets.Connect<<4, body)
}

// packetBytes frames a packet of the given first byte around body.
func packetBytes(first byte, body ...[]byte) []byte {
	var b []byte
	for _, p := range body {
		b = append(b, p...)
	}
	return append(appendVarInt([]byte{first}, len(b)), b...)
}

var (
	four = []byte{0, 0, 0, 10}
	two  = []byte{0, 10}
)

// TestMalformedPacketsRefused ensures what MQTT calls a malformed packet or
// a protocol error, and the packets codec lets through, is refused: a
// property that may appear once appearing twice, in every packet that can
// carry it, Receive Maximum or Maximum Packet Size 0, Request Problem or
// Response Information other than 0 or 1, reserved SUBSCRIBE option bits,
// will QoS or retain without a will, and (3.1.1 only) a password without a
// user name. MQTT 5 gets CONNACK or DISCONNECT with 0x81 or 0x82; MQTT
// 3.1.1 is closed without a CONNACK; the rules' exceptions are accepted.
func TestMalformedPacketsRefused(t *testing.T) {
	e := newEnv(t)
	bystander := e.v5("bystander")
	bystander.subscribe(t, paho.SubscribeOptions{Topic: "ok", QoS: 1})

	will := byte(flagClean | flagWill)
	v5 := func(flags byte, ps []byte, willProps ...[]byte) rawConnect {
		rc := rawConnect{v: 5, flags: flags, props: props(), willPayload: "x", pass: "p"}
		if ps != nil {
			rc.props = ps
		}
		if willProps != nil {
			rc.willProps = props(willProps...)
		}
		return rc
	}
	user := prop(38, append(rawString("k"), rawString("v")...)...)
	const (
		v5Only  = iota // the case is about MQTT 5 properties
		closes         // 3.1.1 with the same flags is closed without a CONNACK
		accepts        // 3.1.1 with the same flags is accepted
	)
	for _, tc := range []struct {
		name   string
		rc     rawConnect
		v5Code byte // CONNACK reason; 0: accepted
		v3     int
	}{
		{"session expiry twice", v5(flagClean, props(prop(17, four...), prop(17, four...))), codeProtocolError, v5Only},
		{"receive maximum twice", v5(flagClean, props(prop(33, two...), prop(33, two...))), codeProtocolError, v5Only},
		{"receive maximum 0", v5(flagClean, props(prop(33, 0, 0))), codeProtocolError, v5Only},
		{"maximum packet size twice", v5(flagClean, props(prop(39, four...), prop(39, four...))), codeProtocolError, v5Only},
		{"maximum packet size 0", v5(flagClean, props(prop(39, 0, 0, 0, 0))), codeProtocolError, v5Only},
		{"topic alias maximum twice", v5(flagClean, props(prop(34, two...), prop(34, two...))), codeProtocolError, v5Only},
		{"request problem information 2", v5(flagClean, props(prop(23, 2))), codeProtocolError, v5Only},
		{"request problem information twice", v5(flagClean, props(prop(23, 1), prop(23, 1))), codeProtocolError, v5Only},
		{"request response information 2", v5(flagClean, props(prop(25, 2))), codeProtocolError, v5Only},
		{"will payload format twice", v5(will, nil, prop(1, 1), prop(1, 1)), codeProtocolError, v5Only},
		{"will content type twice", v5(will, nil, prop(3, rawString("a")...), prop(3, rawString("b")...)), codeProtocolError, v5Only},
		{"will delay twice", v5(will, nil, prop(24, four...), prop(24, four...)), codeProtocolError, v5Only},
		{"will expiry twice", v5(will, nil, prop(2, four...), prop(2, four...)), codeProtocolError, v5Only},
		{"will QoS without a will", v5(flagClean|flagWillQoS1, nil), codeProtocolError, closes},
		{"will retain without a will", v5(flagClean|flagWillRetain, nil), codeProtocolError, closes},
		{"reserved flag", v5(flagClean|0x01, nil), codeMalformed, closes},
		// MQTT 5 allows a password without a user name; 3.1.1 does not.
		{"password without user name", v5(flagClean|flagPassword, nil), 0, closes},
		// The exceptions: user properties may repeat, a will's payload may be empty.
		{"user properties repeated", v5(flagClean, props(user, user)), 0, v5Only},
		{"will with an empty payload", rawConnect{v: 5, flags: will, props: props(), willProps: props()}, 0, accepts},
	} {
		for _, v := range []byte{5, 4} {
			if v == 4 && tc.v3 == v5Only {
				continue
			}
			t.Run(fmt.Sprintf("%s v%d", tc.name, v), func(t *testing.T) {
				rc := tc.rc
				rc.v = v
				r := e.raw()
				r.t = t
				r.version = v
				r.send(rc.bytes())
				pk, err := r.tryRead()
				switch {
				case v == 4 && tc.v3 == closes:
					if err == nil {
						t.Fatalf("3.1.1 got %s, want the connection closed", packets.PacketNames[pk.FixedHeader.Type])
					}
				case err != nil:
					t.Fatalf("no CONNACK: %v", err)
				case pk.FixedHeader.Type != packets.Connack:
					t.Fatalf("got %s, want CONNACK", packets.PacketNames[pk.FixedHeader.Type])
				case v == 4 && pk.ReasonCode != 0:
					t.Fatalf("3.1.1 CONNACK %#x, want accepted", pk.ReasonCode)
				case v == 5 && pk.ReasonCode != tc.v5Code:
					t.Fatalf("CONNACK %#x (%q), want %#x", pk.ReasonCode, pk.Properties.ReasonString, tc.v5Code)
				}
			})
		}
	}

	publish := func(ps ...[]byte) []byte {
		return packetBytes(packets.Publish<<4|0x02, rawString("a"), []byte{0, 1}, props(ps...), []byte("p"))
	}
	subscribe := func(opts byte, ps ...[]byte) []byte {
		return packetBytes(packets.Subscribe<<4|0x02, []byte{0, 1}, props(ps...), rawString("a"), []byte{opts})
	}
	for _, tc := range []struct {
		name   string
		packet []byte
		v3     []byte // the 3.1.1 form, if the case has one
		reason byte   // DISCONNECT reason; 0: accepted
	}{
		{"publish payload format twice", publish(prop(1, 1), prop(1, 1)), nil, codeProtocolError},
		{"publish expiry twice", publish(prop(2, four...), prop(2, four...)), nil, codeProtocolError},
		{"publish content type twice", publish(prop(3, rawString("a")...), prop(3, rawString("a")...)), nil, codeProtocolError},
		{"publish response topic twice", publish(prop(8, rawString("r")...), prop(8, rawString("r")...)), nil, codeProtocolError},
		{"publish correlation data twice", publish(prop(9, rawString("c")...), prop(9, rawString("c")...)), nil, codeProtocolError},
		{"publish topic alias twice", publish(prop(35, 0, 1), prop(35, 0, 1)), nil, codeProtocolError},
		{"subscribe identifier twice", subscribe(1, prop(11, 1), prop(11, 2)), nil, codeProtocolError},
		{"subscribe reserved option bits", subscribe(0xc1), packetBytes(packets.Subscribe<<4|0x02, []byte{0, 1}, rawString("a"), []byte{0xc1}), codeMalformed},
		{"subscribe 3.1.1 reserved bit 2", nil, packetBytes(packets.Subscribe<<4|0x02, []byte{0, 1}, rawString("a"), []byte{0x05}), 0},
		{"puback reason string twice", packetBytes(packets.Puback<<4, []byte{0, 9, 0}, props(prop(31, rawString("a")...), prop(31, rawString("b")...))), nil, codeProtocolError},
		{"disconnect session expiry twice", packetBytes(packets.Disconnect<<4, []byte{0}, props(prop(17, 0, 0, 0, 0), prop(17, 0, 0, 0, 0))), nil, codeProtocolError},
		{"publish user properties repeated", publish(user, user), nil, 0},
	} {
		for _, v := range []byte{5, 4} {
			packet := tc.packet
			if v == 4 {
				packet = tc.v3
			}
			if packet == nil {
				continue
			}
			t.Run(fmt.Sprintf("%s v%d", tc.name, v), func(t *testing.T) {
				if tc.reason == 0 && v == 5 {
					r := e.raw()
					r.t = t
					r.connect(30, packets.Properties{})
					r.send(packet)
					r.expect(packets.Puback)
					r.quiet()
					return
				}
				expectRefused(t, e, v, packet, tc.reason)
			})
		}
	}
	e.v5("pub").publish(t, &paho.Publish{Topic: "ok", QoS: 1, Payload: []byte("fine")})
	if m := bystander.next(t); string(m.Payload) != "fine" {
		t.Fatalf("got %q", m.Payload)
	}
}

// expectRefused sends packet after an accepted CONNECT of protocol level
// v and checks the connection ends: MQTT 5 with a DISCONNECT of reason,
// MQTT 3.1.1 without a packet.
func expectRefused(t *testing.T, e *env, v byte, packet []byte, reason byte) {
	t.Helper()
	r := e.raw()
	r.t = t
	r.version = v
	r.connect(30, packets.Properties{})
	r.send(packet)
	got := r.expectClosed()
	if v == 5 && got != reason {
		t.Fatalf("DISCONNECT %#x, want %#x", got, reason)
	}
	if v == 4 && got != 0 {
		t.Fatalf("a 3.1.1 client got a DISCONNECT %#x", got)
	}
}

// passwordAuth admits clients whose password is "secret"; any other
// password, the empty one included, is a bad credential.
type passwordAuth struct{}

func (passwordAuth) Authenticate(_ context.Context, c auth.Credentials) (auth.Identity, error) {
	switch {
	case !c.HasPassword:
		return auth.Identity{}, auth.ErrNotAuthorized
	case string(c.Password) != "secret":
		return auth.Identity{}, auth.ErrBadCredentials
	}
	return auth.Identity{Tenant: "dev", Subject: c.Username, Anonymous: true}, nil
}

// TestEmptyPasswordIsAPassword ensures a zero-length password reaches the
// authenticator as a password, and failing it is answered as bad
// credentials: MQTT 5 CONNACK 0x86 (Paho), MQTT 3.1.1 CONNACK return code
// 4 (a raw client: Paho 3.1.1 sends no empty password), not a protocol
// error or a silent close.
func TestEmptyPasswordIsAPassword(t *testing.T) {
	e := newEnv(t, func(_ *Config, n *node.Config) { n.Auth = passwordAuth{} })
	_, ack, err := e.dialV5(&paho.Connect{ClientID: "empty-pw", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte{}})
	if ack == nil || ack.ReasonCode != codeBadUserOrPassword {
		t.Fatalf("MQTT 5 empty password: CONNACK %+v (%v), want 0x86", ack, err)
	}
	if _, ack, err := e.dialV5(&paho.Connect{ClientID: "right-pw", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("secret")}); err != nil || ack.ReasonCode != 0 {
		t.Fatalf("the right password refused: %+v %v", ack, err)
	}

	for _, flags := range []byte{flagClean | flagUsername | flagPassword, flagClean | flagPassword} {
		// 3.1.1: with a user name, an empty password gets return code 4;
		// without one, the flags break 3.1.1 and the connection is closed.
		r := e.raw()
		r.version = 4
		r.send(rawConnect{v: 4, flags: flags}.bytes())
		pk, err := r.tryRead()
		if flags&flagUsername == 0 {
			if err == nil {
				t.Fatalf("3.1.1 password without user name: got %s", packets.PacketNames[pk.FixedHeader.Type])
			}
			continue
		}
		if err != nil || pk.FixedHeader.Type != packets.Connack || pk.ReasonCode != 0x04 {
			t.Fatalf("3.1.1 empty password: %+v %v, want CONNACK return code 4", pk, err)
		}
		r.expectClosed()
	}
}
