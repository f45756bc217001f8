package mqtt

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Config configures the MQTT server. The zero Config is valid: every zero
// field takes its default.
type Config struct {
	// MaxPacketSize bounds a whole inbound packet in bytes, and is
	// advertised to MQTT 5 clients as Maximum Packet Size; default 1 MiB.
	MaxPacketSize int `name:"max-packet-size" env:"HERALD_MQTT_MAX_PACKET_SIZE" placeholder:"BYTES" help:"Bounds a whole inbound packet in bytes, and is advertised to MQTT 5 clients as Maximum Packet Size; default 1 MiB."`
	// ConnectTimeout is the time allowed between accepting a connection
	// and receiving its CONNECT; default 10s.
	ConnectTimeout time.Duration `name:"connect-timeout" env:"HERALD_MQTT_CONNECT_TIMEOUT" help:"The time allowed between accepting a connection and receiving its CONNECT; default 10s."`
	// ReceiveMaximum bounds the QoS 1 and 2 publishes a client may have
	// unacknowledged (advertised as Receive Maximum) and, for MQTT 3.1.1
	// clients, the QoS 1 and 2 messages sent to them and not yet
	// acknowledged; default 64.
	ReceiveMaximum int `name:"receive-maximum" env:"HERALD_MQTT_RECEIVE_MAXIMUM" placeholder:"N" help:"Bounds the QoS 1 and 2 publishes a client may have unacknowledged (advertised as Receive Maximum) and, for MQTT 3.1.1 clients, the QoS 1 and 2 messages sent to them and not yet acknowledged; default 64."`
	// QueueSize bounds the live messages queued for one connection; see the
	// package documentation for what happens when it is full; default 1024.
	QueueSize int `name:"queue-size" env:"HERALD_MQTT_QUEUE_SIZE" placeholder:"N" help:"Bounds the live messages queued for one connection; see the package documentation for what happens when it is full; default 1024."`
	// MaxKeepAlive caps the keep alive interval. MQTT 5 clients asking for
	// more, or for none, are told this value (Server Keep Alive); MQTT 3.1.1
	// clients cannot be told, and are held to it anyway; default 20m.
	MaxKeepAlive time.Duration `name:"max-keep-alive" env:"HERALD_MQTT_MAX_KEEP_ALIVE" help:"Cap of the keep alive interval; MQTT 5 clients asking for more, or none, are told this one (default 20m)."`
	// ServerKeepAlive, when set, is the keep alive every client is held
	// to whatever it asked for; MQTT 5 clients are told (Server Keep
	// Alive). Default 0: the client's own, capped by MaxKeepAlive.
	ServerKeepAlive time.Duration `name:"server-keep-alive" env:"HERALD_MQTT_SERVER_KEEP_ALIVE" help:"When set, the keep alive every client is held to whatever it asked for; MQTT 5 clients are told (Server Keep Alive)."`
	// TopicAliasMaximum is the number of topic aliases an MQTT 5 client may
	// use in its PUBLISHes (advertised as Topic Alias Maximum); default 32,
	// -1 for none.
	TopicAliasMaximum int `name:"topic-alias-maximum" env:"HERALD_MQTT_TOPIC_ALIAS_MAXIMUM" placeholder:"N" help:"The number of topic aliases an MQTT 5 client may use in its PUBLISHes (advertised as Topic Alias Maximum); default 32, -1 for none."`
	// OutboundTopicAliases caps the topic aliases the server assigns in
	// the PUBLISHes it sends to an MQTT 5 client that accepts them (the
	// client's Topic Alias Maximum), least recently used replaced first;
	// default 32, -1 for none.
	OutboundTopicAliases int `name:"outbound-topic-aliases" env:"HERALD_MQTT_OUTBOUND_TOPIC_ALIASES" placeholder:"N" help:"Caps the topic aliases the server assigns in the PUBLISHes it sends to an MQTT 5 client that accepts them (the client's Topic Alias Maximum), least recently used replaced first; default 32, -1 for none."`
	// ResponseInformation is returned in CONNACK to MQTT 5 clients that ask
	// for response information: the base of the response topics they may
	// use. Default none.
	ResponseInformation string `name:"response-information" env:"HERALD_MQTT_RESPONSE_INFORMATION" placeholder:"TOPIC" help:"Returned in CONNACK to MQTT 5 clients that ask for response information: the base of the response topics they may use."`
	// TakeoverWait bounds how long a CONNECT waits for the connection it
	// takes over (same tenant and client identifier, on any edge) to be
	// gone before it is answered; default 1s.
	TakeoverWait time.Duration `name:"takeover-wait" env:"HERALD_MQTT_TAKEOVER_WAIT" help:"Bounds how long a CONNECT waits for the connection it takes over (same tenant and client identifier, on any edge) to be gone before it is answered; default 1s."`
	// SoleEdge says no other edge serves this edge's tenants: the
	// all-in-one process, whose sessions live in a store only it can open.
	// A session's older connection can then only be on this edge, so a
	// CONNECT takes over locally and holds no control subscription on
	// NATS (that subscription and its server side are about 1.1 KiB of
	// every idle connection's 12). Never set it on edges that share a
	// store: a client reconnecting through another edge would then have
	// two live connections.
	SoleEdge bool `name:"sole-edge" env:"HERALD_MQTT_SOLE_EDGE" help:"Says no other edge serves this edge's tenants: the all-in-one process, whose sessions live in a store only it can open."`
	// retireAfter is how long the control subscription of an ended
	// connection keeps answering for it (Server.release): long enough for
	// the requests the NATS server routed before it had the UNSUB, many
	// round trips; short, as its "gone" may come before the answer of a
	// newer connection of the client elsewhere that the session record
	// does not name yet. A quarter of TakeoverWait; set by tests only.
	retireAfter time.Duration
	// WriteTimeout bounds each write to a client, so that a client that
	// stopped reading cannot hold a connection forever; default 10s.
	WriteTimeout time.Duration `name:"write-timeout" env:"HERALD_MQTT_WRITE_TIMEOUT" help:"Bounds each write to a client, so that a client that stopped reading cannot hold a connection forever; default 10s."`
	// SessionLease is the length of the edge lease that vouches for every
	// persistent session the edge holds (store.EdgeLeaseStore,
	// record.Session.Edge); the edge renews it every third of it. If the
	// edge dies, the session service takes its sessions as disconnected
	// when the lease lapses and fires their wills (after their delay): it
	// bounds how late a will of a dead edge comes; default 10s.
	SessionLease time.Duration `name:"session-lease" env:"HERALD_MQTT_SESSION_LEASE" help:"Lease of a connected MQTT session; bounds how late a dead edge's wills fire (default 10s)."`
	// SessionSaveInterval is how often the session record of a live
	// connection is saved if its delivery cursor or in-flight state moved
	// (an idle one is not written): it bounds the write rate per session
	// and what a crash sends again; default 1s.
	SessionSaveInterval time.Duration `name:"session-save-interval" env:"HERALD_MQTT_SESSION_SAVE_INTERVAL" help:"Most frequent save of a live session's cursor (default 1s)."`
	// MaxSessionExpiry caps the Session Expiry Interval an MQTT 5 client
	// may ask for (it is told the value kept) and is the expiry of an MQTT
	// 3.1.1 persistent session (CleanSession 0); default 24h.
	MaxSessionExpiry time.Duration `name:"max-session-expiry" env:"HERALD_MQTT_MAX_SESSION_EXPIRY" help:"Cap of MQTT session expiry, and the expiry of 3.1.1 persistent sessions (default 24h)."`
	// MaxOfflineMessages bounds the messages a resumed session is sent
	// from what it missed while offline; beyond it the oldest are skipped
	// (counted in Stats.OfflineDropped and logged); default 10000.
	MaxOfflineMessages int `name:"max-offline-messages" env:"HERALD_MQTT_MAX_OFFLINE_MESSAGES" placeholder:"N" help:"Most messages sent to a resuming session; older ones are skipped and counted (default 10000)."`
	// WebSocketOrigins are host patterns (path.Match syntax) of browser
	// origins allowed to open MQTT over WebSocket besides the server's own
	// host; default none.
	WebSocketOrigins []string `name:"websocket-origins" env:"HERALD_MQTT_WEBSOCKET_ORIGINS" placeholder:"PATTERN" help:"Host patterns (path.Match syntax) of browser origins allowed to open MQTT over WebSocket besides the server's own host; default none."`
}

// Defaults used for zero Config fields.
const (
	DefaultMaxPacketSize  = 1 << 20
	DefaultConnectTimeout = 10 * time.Second
	DefaultReceiveMaximum = 64
	DefaultQueueSize      = 1024
	DefaultMaxKeepAlive   = 20 * time.Minute
	DefaultWriteTimeout   = 10 * time.Second
	DefaultTopicAliases   = 32
	DefaultTakeoverWait   = time.Second
	DefaultSessionLease   = 10 * time.Second
	DefaultSessionSave    = time.Second
	DefaultSessionExpiry  = 24 * time.Hour
	DefaultOfflineMax     = 10000
)

// closeWait bounds the WebSocket closing handshake of a connection the
// server ends (wsConn): the connection's teardown waits for the client's
// close frame, so a client that does not answer would hold a takeover of
// its session; half the takeover wait, at most lingerTimeout.
func (c Config) closeWait() time.Duration {
	return min(c.TakeoverWait/2, lingerTimeout)
}

// maxMQTTPacket is the largest packet MQTT can frame: a 4-byte remaining
// length of 268,435,455 plus the fixed header.
const maxMQTTPacket = 268435455 + 5

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.MaxPacketSize == 0 {
		c.MaxPacketSize = DefaultMaxPacketSize
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.ReceiveMaximum == 0 {
		c.ReceiveMaximum = DefaultReceiveMaximum
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.MaxKeepAlive == 0 {
		c.MaxKeepAlive = DefaultMaxKeepAlive
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.TopicAliasMaximum == 0 {
		c.TopicAliasMaximum = DefaultTopicAliases
	}
	if c.OutboundTopicAliases == 0 {
		c.OutboundTopicAliases = DefaultTopicAliases
	}
	if c.TakeoverWait == 0 {
		c.TakeoverWait = DefaultTakeoverWait
	}
	if c.retireAfter == 0 {
		c.retireAfter = c.TakeoverWait / 4
	}
	if c.SessionLease == 0 {
		c.SessionLease = DefaultSessionLease
	}
	if c.SessionSaveInterval == 0 {
		c.SessionSaveInterval = DefaultSessionSave
	}
	if c.MaxSessionExpiry == 0 {
		c.MaxSessionExpiry = DefaultSessionExpiry
	}
	if c.MaxOfflineMessages == 0 {
		c.MaxOfflineMessages = DefaultOfflineMax
	}
	return c
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if c.ConnectTimeout < 0 || c.MaxKeepAlive < 0 || c.WriteTimeout < 0 || c.QueueSize < 0 ||
		c.ServerKeepAlive < 0 || c.TakeoverWait < 0 {
		return errors.New("mqtt: negative limit")
	}
	if c.MaxPacketSize < 128 || c.MaxPacketSize > maxMQTTPacket {
		return fmt.Errorf("mqtt: max_packet_size must be 128..%d, got %d", maxMQTTPacket, c.MaxPacketSize)
	}
	if c.ReceiveMaximum < 1 || c.ReceiveMaximum > 65535 {
		return fmt.Errorf("mqtt: receive_maximum must be 1..65535, got %d", c.ReceiveMaximum)
	}
	if c.MaxKeepAlive < time.Second || c.MaxKeepAlive > 65535*time.Second {
		return fmt.Errorf("mqtt: max_keep_alive must be 1s..65535s, got %s", c.MaxKeepAlive)
	}
	if c.ServerKeepAlive > c.MaxKeepAlive || (c.ServerKeepAlive > 0 && c.ServerKeepAlive < time.Second) {
		return fmt.Errorf("mqtt: server_keep_alive must be 0 or 1s..max_keep_alive, got %s", c.ServerKeepAlive)
	}
	if c.SessionLease < time.Second || c.SessionSaveInterval <= 0 || c.SessionSaveInterval > c.SessionLease/3 {
		return fmt.Errorf("mqtt: session_lease must be at least 1s and session_save_interval at most a third of it, got %s and %s",
			c.SessionLease, c.SessionSaveInterval)
	}
	if c.MaxSessionExpiry < time.Second || c.MaxSessionExpiry > math.MaxUint32*time.Second {
		return fmt.Errorf("mqtt: max_session_expiry must be 1s..%ds, got %s", uint32(math.MaxUint32), c.MaxSessionExpiry)
	}
	if c.MaxOfflineMessages < 1 {
		return fmt.Errorf("mqtt: max_offline_messages must be positive, got %d", c.MaxOfflineMessages)
	}
	for name, v := range map[string]int{"topic_alias_maximum": c.TopicAliasMaximum, "outbound_topic_aliases": c.OutboundTopicAliases} {
		if v < -1 || v > 65535 {
			return fmt.Errorf("mqtt: %s must be -1..65535, got %d", name, v)
		}
	}
	return nil
}
