// Package mqtt is the MQTT 3.1.1 and 5.0 server of an edge, over TCP and
// over WebSocket (GET /mqtt, subprotocol "mqtt"; a WebSocket is adapted to
// a byte stream, so a frame may carry part of a packet or several packets).
//
// # What is supported
//
// CONNECT for protocol levels 4 (3.1.1) and 5, authenticated by the node's
// Authenticator (the identity's tenant is the connection's topic
// namespace). Persistent sessions (5.0 Session Expiry Interval, capped by
// MaxSessionExpiry; 3.1.1 CleanSession 0) are kept in the session store
// through the writer the server is given (Deps.Sessions) and resume on any
// edge, with the messages missed while offline replayed from the stream by
// a saved cursor (persist.go has the design, the write rate, the overflow
// policy and how QoS 2 stays exactly once across an edge crash).
// An empty client identifier is
// replaced by a generated one (5.0: returned as Assigned Client Identifier;
// 3.1.1: only with CleanSession, as the specification requires).
//
// PUBLISH at QoS 0, 1 and 2 in both directions (CONNACK leaves Maximum QoS
// out, which means 2), delivered at the lower of the message's QoS and the
// subscription's; SUBSCRIBE with wildcards; retained messages (read from
// the session store after live interest is in effect, duplicates of live
// messages dropped by sequence), no-local, retain-as-published, retain
// handling, subscription identifiers, message expiry (decremented on
// delivery), the client's Maximum Packet Size and Receive Maximum, topic
// aliases both ways, shared subscriptions, session takeover on any edge,
// Request Problem Information (reason strings on acks), Request Response
// Information (Config.ResponseInformation), Server Keep Alive, server
// DISCONNECT with reasons (0x8B shutdown, 0x8E takeover, 0x9C/0x9D through
// Server.Redirect; a connection ended with a reason, or refused in
// CONNACK, closes lingering so that the client reads it: see
// lingerTimeout), UNSUBSCRIBE, PINGREQ, DISCONNECT, keep alive (1.5
// times), and will messages with will delay: a will due at once (no delay,
// or a session that ends with the connection) is published by the edge on
// an abnormal close; a delayed one is left in the session record, and the
// session service publishes it when due, or when the connection's lease
// lapses because the edge died. Not yet: enhanced authentication (AUTH).
// docs/mqtt.md has the full table.
//
// # QoS 2
//
// Inbound, PUBREC is sent only once JetStream stored the message. The
// session keeps the packet identifier until PUBREL: a retransmission
// meanwhile is answered with PUBREC and not published again, and the
// message is published with a JetStream message id unique to the exchange
// (qos2MsgID: tenant, client, a per-session nonce, the packet identifier
// and a per-session count) so that a copy sent again after an edge
// failure is dropped by JetStream while a later reuse of the identifier is
// not. Outbound, PUBLISH → PUBREC → PUBREL → PUBCOMP, the message counting
// against the client's Receive Maximum until PUBCOMP; a persistent session
// saves the exchange before its PUBLISH and before its PUBREL leave, so
// that a session resumed after an edge crash continues it and never sends
// the message again as a new one (persist.go).
//
// # Takeover and shared subscriptions
//
// A CONNECT closes the connection of the same tenant and client identifier
// on this edge directly, and on other edges through a request on the core
// NATS control subject of the client, before it is answered (takeover.go).
// A shared subscription $share/<group>/<filter> is a subscription of the
// core with a group (node.SubOptions.Group): a NATS queue subscription on
// the filter's live subjects, the queue named after tenant, group and
// filter, so NATS gives each message to one edge with members; that edge
// gives it to one local member, round robin. No retained messages are
// sent to a shared subscription.
//
// # Durability
//
// A QoS 1 PUBACK (QoS 2 PUBREC) is sent only after the backbone acknowledged the store: a
// success reason code means the message is in JetStream. A publish that
// failed is answered with an error reason code (5.0) or by closing the
// connection (3.1.1, which has no negative acknowledgement), never with a
// success. Publishes are not serialised on the JetStream round trip: each
// is sent to the backbone from the reader goroutine, in arrival order (so a
// connection's publishes are stored in the order sent, across topics), and
// up to ReceiveMaximum of them await their store confirmation at once.
// PUBACKs leave in the order the PUBLISHes arrived, as MQTT 5 §4.6 requires.
// One confirmer goroutine per connection, running while stores are
// awaited, waits for them in that order (not one goroutine per publish).
//
// A QoS 0 PUBLISH is at most once, so it is sent without asking JetStream
// for an acknowledgement (node.Send: no reply subject, which JetStream
// stores all the same): no round trip and nothing to wait for, except
// one in every qos0Pace (16), which is sent with an acknowledgement
// request and takes an in-flight slot until acknowledged. Since a
// connection's messages are stored in order, that acknowledgement tells
// that the ones before it were taken, so a QoS 0 publisher runs at most
// ReceiveMaximum × qos0Pace messages ahead of the stream, rather than
// filling JetStream's ingest queue until it drops messages. A QoS 0
// message JetStream could not store is lost without notice (it used to be
// logged); the order of a connection's publishes, QoS 0 and QoS 1/2
// mixed, is kept, as they share the edge's NATS connection.
//
// # Queues and overflow
//
// Each connection has one reader goroutine and, only while it has something
// to write (and for writerLinger, 100 ms, after, so that a steady flow
// keeps one writer rather than starting one per message), one writer
// goroutine, which writes up to 128 queued packets per lock acquisition
// through a pooled bufio.Writer and flushes when its queue is empty, so a
// burst leaves in few system calls. PUBLISH packets are encoded by
// publishEncoder straight from the message into the writer (no
// allocation; byte for byte what the packets codec produces, which a test
// checks). The reader holds a read buffer only while bytes are arriving:
// on a plain TCP socket it waits for data through the runtime poller and
// reads whatever arrived with one system call; CONNECT, SUBSCRIBE and
// UNSUBSCRIBE are handled on a helper goroutine, so that the deep calls
// they make do not leave every idle connection's reader with a grown
// stack.
//
// Live messages reach a connection through its feed (node.Feed, the
// edge's core: the connection's subscriptions and the bounded queue of
// their live messages, one delivery per message at the highest QoS its
// subscriptions grant): it holds at most QueueSize messages under
// node.OverflowShedQoS0. While the connection's writer drains it, a
// filling queue slows the tenant's publishers and a full one makes the
// delivery wait (node's backpressure: a client reading at full speed
// loses nothing to an edge short of CPU). When the client itself is slow
// and the queue is full, a QoS 0 message is dropped (counted in Stats.Dropped); a QoS 1 or 2
// message evicts the oldest queued QoS 0 message if there is one, and
// otherwise the client is a slow consumer: it is sent DISCONNECT 0x97
// Quota exceeded (the limit that was hit is an administrative one, the
// queue; 0x89 Server busy would wrongly blame the server) and the
// connection is closed (counted in Stats.SlowConsumers). QoS 1 and 2
// messages wait in the feed while the client's in-flight window (its
// Receive Maximum; ReceiveMaximum for 3.1.1) is full: the writer takes
// what the window allows (node.Feed.Take). Retained messages sent after a
// SUBSCRIBE, a resume's replayed messages and retransmissions are queued
// by the connection ahead of the feed's, already in memory, and do not
// count against the bound.
//
// # Codec
//
// Packets are encoded and decoded with the packets package of mochi-mqtt
// (only the codec, not its broker): a maintained MQTT 3.1.1/5 codec with
// its own fuzz and conformance tests, which saves Herald from owning the
// subtle parts of the wire format (properties, variable byte integers,
// UTF-8 rules). Herald keeps the framing: readPacket bounds the remaining
// length by MaxPacketSize before allocating anything, rejects packet types
// a client may not send, turns a panic of the decoder into a malformed
// packet, so a hostile packet closes one connection and nothing else, and
// checks what the codec leaves unchecked in one validating layer over it
// (validate.go: properties that may appear once, restricted values,
// reserved bits, CONNECT flags that depend on one another), so that the
// handlers only see packets MQTT allows.
// Decoded packets are recycled (packetPool) once handled; outbound
// PUBLISH packets, the hot path, are encoded by publishEncoder, and every
// other packet by the codec.
package mqtt
