package mqtt

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/record"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/limits"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// connect handles the CONNECT packet: it authenticates the client, settles
// the session parameters and queues the CONNACK. A refused client has been
// sent its CONNACK when connect returns an error.
func (c *conn) connect(ctx context.Context, pk *packets.Packet) error {
	v := pk.ProtocolVersion
	if string(pk.Connect.ProtocolName) != "MQTT" || (v != 4 && v != 5) {
		if string(pk.Connect.ProtocolName) == "MQIsdp" || string(pk.Connect.ProtocolName) == "MQTT" {
			c.refuse(v, ErrUnsupportedVersion)
		}
		return fmt.Errorf("%w: %q level %d", ErrUnsupportedVersion, pk.Connect.ProtocolName, v)
	}
	if v == 5 && (pk.Properties.AuthenticationMethod != "" || len(pk.Properties.AuthenticationData) > 0) {
		c.refuse(v, ErrBadAuthMethod)
		return ErrBadAuthMethod
	}

	actx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	id, err := c.n.Authenticate(actx, c.credentials(pk))
	if err == nil {
		// Counted against the tenant's connections and registered for
		// revocation before the CONNACK; released by teardown, or by
		// serve if the CONNECT is refused further on.
		c.adm, err = c.n.Admit(actx, node.ClientInfo{ID: pk.Connect.ClientIdentifier, Protocol: "mqtt",
			Remote: c.nc.RemoteAddr().String(), Identity: id}, c.revoke)
	}
	cancel()
	if err != nil {
		c.refuse(v, err)
		return err
	}
	c.id = id
	// Over WebSocket, the HTTP connection no longer counts as
	// unauthenticated against its source (limits.PreAuth).
	limits.Authenticated(ctx)

	clientID, assigned := pk.Connect.ClientIdentifier, ""
	if clientID == "" {
		if v == 4 && !pk.Connect.Clean {
			c.refuse(v, ErrClientID) // [MQTT-3.1.3-8]
			return ErrClientID
		}
		clientID = newClientID()
		if v == 5 {
			assigned = clientID
		}
	}

	// Under mu: shutdown may read the version from another goroutine.
	c.mu.Lock()
	c.version = v
	c.clientID = clientID
	c.tenant = id.Tenant
	c.origin = c.n.Origin(clientID)
	c.connID = newConnID()
	c.window = c.cfg.ReceiveMaximum
	if v == 5 {
		p := &pk.Properties
		c.window = 65535
		if rm := p.ReceiveMaximum; rm > 0 {
			c.window = int(rm)
		}
		c.maxOut = int(p.MaximumPacketSize)
		c.problemInfo = !p.RequestProblemInfoFlag || p.RequestProblemInfo != 0
		c.seqProperty = asked(p.User, SeqProperty)
		c.traceProperty = asked(p.User, TraceProperty)
		c.aliasMax = max(c.cfg.TopicAliasMaximum, 0)
		if n := min(int(p.TopicAliasMaximum), c.cfg.OutboundTopicAliases); n > 0 {
			c.aliasesOut = newAliasLRU(n)
		}
	}
	c.mu.Unlock()
	c.pubSlots = make(chan struct{}, c.cfg.ReceiveMaximum)
	c.ackRoom = make(chan struct{}, 1)

	keepAlive := time.Duration(pk.Connect.Keepalive) * time.Second
	serverKeepAlive := true
	switch {
	case c.cfg.ServerKeepAlive > 0:
		keepAlive = c.cfg.ServerKeepAlive.Truncate(time.Second)
	case keepAlive == 0 || keepAlive > c.cfg.MaxKeepAlive:
		keepAlive = c.cfg.MaxKeepAlive.Truncate(time.Second)
	default:
		serverKeepAlive = false
	}
	c.keepAlive = keepAlive

	if pk.Connect.WillFlag {
		c.will = &message.Message{Tenant: c.tenant, Topic: pk.Connect.WillTopic, Payload: pk.Connect.WillPayload,
			QoS: pk.Connect.WillQos, Retain: pk.Connect.WillRetain, Origin: c.origin}
		if v == 5 {
			c.willTTL = applyProperties(c.will, &pk.Connect.WillProperties)
			c.willDelay = time.Duration(pk.Connect.WillProperties.WillDelayInterval) * time.Second
		}
		// A will is a publish the client makes now, to be delivered later:
		// judged now, by the publish path's own checks, so that nobody can
		// leave a message where it may not publish (its topic, "$" topics
		// included, against its capabilities; its payload against the
		// tenant's limit; its message against the rates). It is judged
		// once, as a PUBLISH is: what was accepted is delivered.
		if c.willAccepted, err = c.n.Accept(c.adm.Caller(), c.will); err != nil {
			if !fault.Is(err, fault.InvalidTopic) {
				err = willRefused(err)
			}
			c.refuse(v, err)
			return err
		}
		c.storeWill = record.WillOf(c.will, c.willDelay, c.willTTL)
	}

	// Session expiry: what the client asks (3.1.1: CleanSession 0 asks
	// for a persistent session), capped; nothing outlives the connection
	// without a session store.
	maxExpiry := uint32(c.cfg.MaxSessionExpiry / time.Second)
	askedExpiry := pk.Properties.SessionExpiryInterval
	switch {
	case c.s.sessions == nil:
	case v == 5:
		c.expiry = min(askedExpiry, maxExpiry)
	case !pk.Connect.Clean:
		c.expiry = maxExpiry
	}
	c.persistent = c.expiry > 0

	// The session is this connection's from here: whichever connection
	// held it, here or on another edge, is closed first (bounded), and has
	// saved the session before it answered.
	if err := c.s.takeOver(ctx, c); err != nil && !pk.Connect.Clean {
		err = fmt.Errorf("%w: %w", ErrServerUnavailable, err)
		c.refuse(v, err)
		c.s.release(c)
		return err
	}
	rec, present, err := c.openSession(ctx, pk.Connect.Clean)
	if err != nil {
		if !errors.Is(err, record.ErrSessionLimit) {
			err = fmt.Errorf("%w: session: %w", ErrServerUnavailable, err)
		}
		c.refuse(v, err)
		c.s.release(c)
		return err
	}
	c.saveMu.Lock()
	keeps := c.keeps()
	c.saveMu.Unlock()
	if keeps {
		c.s.saveStart.Do(func() {
			c.s.wg.Add(1)
			go c.s.saveLoop()
		})
	}

	ack := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: v,
		SessionPresent: present, Mods: packets.Mods{AllowResponseInfo: true, MaxSize: uint32(c.maxOut)}}
	if v == 5 {
		p := &ack.Properties
		p.AssignedClientID = assigned
		p.ReceiveMaximum = uint16(c.cfg.ReceiveMaximum)
		p.MaximumPacketSize = uint32(c.cfg.MaxPacketSize)
		// Maximum QoS is left out: its absence means QoS 2 [MQTT-3.2.2-9].
		p.RetainAvailable, p.RetainAvailableFlag = 1, true
		p.WildcardSubAvailable, p.WildcardSubAvailableFlag = 1, true
		p.SubIDAvailable, p.SubIDAvailableFlag = 1, true
		p.SharedSubAvailable, p.SharedSubAvailableFlag = 1, true
		p.TopicAliasMaximum = uint16(c.aliasMax)
		if serverKeepAlive {
			p.ServerKeepAlive, p.ServerKeepAliveFlag = uint16(keepAlive/time.Second), true
		}
		if askedExpiry != c.expiry {
			// The interval kept is not the one asked for: say so [MQTT-3.2.2-16].
			p.SessionExpiryInterval, p.SessionExpiryIntervalFlag = c.expiry, true
		}
		if pk.Properties.RequestResponseInfo == 1 {
			p.ResponseInfo = c.cfg.ResponseInformation // [MQTT-3.1.2-28]
		}
		// The asks are honoured: answered with the same.
		if c.seqProperty {
			p.User = append(p.User, packets.UserProperty{Key: SeqProperty, Val: "1"})
		}
		if c.traceProperty {
			p.User = append(p.User, packets.UserProperty{Key: TraceProperty, Val: "1"})
		}
	}
	c.sendControl(encodeBytes(ack))
	if present {
		if err := c.resume(ctx, rec); err != nil {
			// The connection is set up: closing it goes through the read
			// loop and teardown, which release what the resume took.
			if !errors.Is(err, errClosing) {
				c.s.log.Warn("mqtt session not resumed", "client", c.clientID, "err", err)
			}
			c.disconnect(err)
		}
	}
	return nil
}

// credentials returns what the client presents: CONNECT's username and
// password, its address and, over TLS, its certificate.
func (c *conn) credentials(pk *packets.Packet) auth.Credentials {
	cr := auth.Credentials{Username: string(pk.Connect.Username), Password: pk.Connect.Password,
		HasPassword: pk.Connect.PasswordFlag, RemoteAddr: c.nc.RemoteAddr().String()}
	if tc, ok := c.nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		if len(st.PeerCertificates) > 0 {
			cr.Certificate, cr.CertificateVerified = st.PeerCertificates[0], len(st.VerifiedChains) > 0
		}
	}
	return cr
}

// revoke ends the connection because its credential was revoked or its
// tenant deleted (node.Clients): MQTT 5 DISCONNECT 0x87, then close. It
// only queues the DISCONNECT: it runs on the Directory's goroutine.
func (c *conn) revoke(reason error) {
	c.s.log.Info("mqtt connection closed: credential revoked", "client", c.clientID, "tenant", c.tenant, "reason", reason)
	c.disconnect(reason)
}

// willRefused wraps why a will is refused for its CONNACK: 0x87 outside
// the capabilities, 0x95 (packet too large) over the payload limit, 0x97
// (quota exceeded) over a rate; MQTT 3.1.1 return code 5 (not
// authorized) for each, the closest it has.
func willRefused(err error) error {
	if fault.Is(err, fault.PayloadQuota) {
		err = errors.Join(ErrPacketTooLarge, err)
	}
	return fmt.Errorf("%w: %w", errWillRefused, err)
}

// refuse writes a CONNACK refusing the client for err. It writes directly:
// no writer runs before the CONNECT is accepted.
func (c *conn) refuse(v byte, err error) {
	code := reasonIn(err, packets.Connack)
	ack := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: v}
	switch {
	case v == 5 || (v > 5 && errors.Is(err, ErrUnsupportedVersion)):
		ack.ProtocolVersion, ack.ReasonCode = 5, code
		ack.Properties.ReasonString = reasonString(err)
	case errors.Is(err, errWillRefused):
		ack.ProtocolVersion, ack.ReasonCode = 4, 0x05
	default:
		ack.ProtocolVersion, ack.ReasonCode = 4, fault.Of(err).MQTT3
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(closeGrace))
	_, _ = c.nc.Write(encodeBytes(ack))
	c.mu.Lock()
	c.reasoned = true // the close lingers (closeLingering)
	c.mu.Unlock()
}

// newConnID returns an identifier for one connection, unique across edges.
func newConnID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newClientID returns a client identifier for a client that sent none.
func newClientID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "herald-" + hex.EncodeToString(b[:])
}
