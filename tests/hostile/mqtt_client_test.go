package hostile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// mqttConn is a raw MQTT connection: the attacks need to send what no
// client library would.
type mqttConn struct {
	net.Conn
	r       *bufio.Reader
	code    byte             // the CONNACK reason code (v5) or return code (3.1.1)
	connack *packets.Connack // v5 only
}

// dialFrom opens a TCP connection to addr from the loopback address src
// (empty: the default). Failed authentications are limited per source
// address, so attacks that fail on purpose each use their own.
func dialFrom(addr, src string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return d.Dial("tcp", addr)
}

func dialMQTT(addr, src string) (*mqttConn, error) {
	c, err := dialFrom(addr, src)
	if err != nil {
		return nil, err
	}
	return &mqttConn{Conn: c, r: bufio.NewReader(c)}, nil
}

// connectV5 sends an MQTT 5 CONNECT (password = key or JWT) from the
// default source and reads the CONNACK; mutate may change the packet.
func connectV5(addr, clientID, username, password string, mutate func(*packets.Connect)) (*mqttConn, error) {
	return connectV5From(addr, "", clientID, username, password, mutate)
}

func connectV5From(addr, src, clientID, username, password string, mutate func(*packets.Connect)) (*mqttConn, error) {
	c, err := dialMQTT(addr, src)
	if err != nil {
		return nil, err
	}
	cp := packets.NewControlPacket(packets.CONNECT)
	cn := cp.Content.(*packets.Connect)
	cn.ProtocolName, cn.ProtocolVersion, cn.ClientID, cn.CleanStart, cn.KeepAlive = "MQTT", 5, clientID, true, 30
	cn.Properties = &packets.Properties{}
	if username != "" {
		cn.UsernameFlag, cn.Username = true, username
	}
	if password != "" {
		cn.PasswordFlag, cn.Password = true, []byte(password)
	}
	if mutate != nil {
		mutate(cn)
	}
	if _, err := cp.WriteTo(c); err != nil {
		c.Close()
		return nil, err
	}
	pk, err := c.read(10 * time.Second)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("no CONNACK: %w", err)
	}
	ack, ok := pk.Content.(*packets.Connack)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("got %s, want CONNACK", pk.PacketType())
	}
	c.code, c.connack = ack.ReasonCode, ack
	return c, nil
}

// connectV3 sends an MQTT 3.1.1 CONNECT and reads the CONNACK's return code.
func connectV3(addr, src, clientID, password string) (*mqttConn, error) {
	return connectV3Will(addr, src, clientID, password, "", nil)
}

// connectV3Will sends an MQTT 3.1.1 CONNECT, with a QoS 0 will unless
// willTopic is empty, and reads the CONNACK's return code.
func connectV3Will(addr, src, clientID, password, willTopic string, willPayload []byte) (*mqttConn, error) {
	c, err := dialMQTT(addr, src)
	if err != nil {
		return nil, err
	}
	flags := byte(0x02) // clean session
	if willTopic != "" {
		flags |= 0x04
	}
	if password != "" {
		flags |= 0xC0
	}
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, flags, 0, 30}
	body = appendString(body, clientID)
	if willTopic != "" {
		body = appendString(body, willTopic)
		body = appendString(body, string(willPayload))
	}
	if password != "" {
		body = appendString(body, "u")
		body = appendString(body, password)
	}
	if _, err := c.Write(append(fixedHeader(0x10, len(body)), body...)); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 4)
	if _, err := io.ReadFull(c.r, b); err != nil {
		c.Close()
		return nil, fmt.Errorf("no CONNACK: %w", err)
	}
	if b[0] != 0x20 || b[1] != 2 {
		c.Close()
		return nil, fmt.Errorf("not a 3.1.1 CONNACK: % x", b)
	}
	c.code = b[3]
	return c, nil
}

// read reads the next packet, waiting at most d.
func (c *mqttConn) read(d time.Duration) (*packets.ControlPacket, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	return packets.ReadPacket(c.r)
}

// write sends a packet.
func (c *mqttConn) write(cp *packets.ControlPacket) error {
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := cp.WriteTo(c)
	return err
}

// disconnectCode reads until the server's DISCONNECT and returns its
// reason code; the connection must then close. An error if the server
// closes without one or sends nothing within d.
func (c *mqttConn) disconnectCode(d time.Duration) (byte, error) {
	for {
		pk, err := c.read(d)
		if err != nil {
			return 0, err
		}
		if dc, ok := pk.Content.(*packets.Disconnect); ok {
			return dc.ReasonCode, nil
		}
	}
}

// closedAfter reports whether the server closed the connection (EOF or
// reset) within d, after whatever it sent.
func (c *mqttConn) closedAfter(d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c.r)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// publish sends a QoS 1 PUBLISH and returns the PUBACK's reason code, or
// the DISCONNECT's (disconnected true) if the server ends the connection.
func (c *mqttConn) publish(topic string, payload []byte, id uint16) (code byte, disconnected bool, err error) {
	cp := packets.NewControlPacket(packets.PUBLISH)
	p := cp.Content.(*packets.Publish)
	p.Topic, p.QoS, p.PacketID, p.Payload, p.Properties = topic, 1, id, payload, &packets.Properties{}
	if err := c.write(cp); err != nil {
		return 0, false, err
	}
	for {
		pk, err := c.read(10 * time.Second)
		if err != nil {
			return 0, false, err
		}
		switch v := pk.Content.(type) {
		case *packets.Puback:
			if v.PacketID == id {
				return v.ReasonCode, false, nil
			}
		case *packets.Disconnect:
			return v.ReasonCode, true, nil
		}
	}
}

// subscribe sends one SUBSCRIBE of filters at QoS 1 and returns the SUBACK
// reason codes, or the DISCONNECT's code.
func (c *mqttConn) subscribe(id uint16, filters ...string) (codes []byte, disconnect *byte, err error) {
	cp := packets.NewControlPacket(packets.SUBSCRIBE)
	s := cp.Content.(*packets.Subscribe)
	s.PacketID, s.Properties = id, &packets.Properties{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, packets.SubOptions{Topic: f, QoS: 1})
	}
	if err := c.write(cp); err != nil {
		return nil, nil, err
	}
	for {
		pk, err := c.read(30 * time.Second)
		if err != nil {
			return nil, nil, err
		}
		switch v := pk.Content.(type) {
		case *packets.Suback:
			if v.PacketID == id {
				return v.Reasons, nil, nil
			}
		case *packets.Disconnect:
			return nil, &v.ReasonCode, nil
		}
	}
}

// fixedHeader returns a fixed header of type byte t and remaining length n.
func fixedHeader(t byte, n int) []byte {
	b := []byte{t}
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}
