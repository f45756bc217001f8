// Package mqtt is the MQTT 3.1.1 and 5.0 server of an edge, over TCP and
// over WebSocket (GET /mqtt, subprotocol "mqtt"; a WebSocket is adapted to
// a byte stream, so a frame may carry part of a packet or several packets).
//
// # What is supported
//
// CONNECT for protocol levels 4 (3.1.1) and 5, authenticated by the node's
// Authenticator (the identity's tenant is the connection's topic
// namespace). Clean sessions only: SessionPresent is always 0, and a 3.1.1
// client asking for a persistent session gets one that ends with the
// connection; a 5.0 client is told Session Expiry Interval 0. An empty
// client identifier is replaced by a generated one (5.0: returned as
// Assigned Client Identifier; 3.1.1: only with CleanSession, as the
// specification requires). PUBLISH at QoS 0 and 1 in both directions,
// SUBSCRIBE with wildcards, retained messages (read from the session store
// after live interest is in effect, duplicates of live messages dropped by
// sequence), no-local, retain-as-published, retain handling, subscription
// identifiers, message expiry, the client's Maximum Packet Size and
// Receive Maximum, UNSUBSCRIBE, PINGREQ, DISCONNECT, keep alive, and will
// messages (published at once on an abnormal close; the will delay is not
// honoured, and a will is not published when the edge itself shuts down).
//
// Not yet: QoS 2 (CONNACK advertises Maximum QoS 1; a QoS 2 PUBLISH is
// answered with DISCONNECT 0x9B, or a close for 3.1.1), persistent sessions
// and session takeover, topic aliases (Topic Alias Maximum 0), shared
// subscriptions (SUBACK 0x9E), enhanced authentication (AUTH).
//
// # Durability
//
// A QoS 1 PUBACK is sent only after the backbone acknowledged the store: a
// success reason code means the message is in JetStream. A publish that
// failed is answered with an error reason code (5.0) or by closing the
// connection (3.1.1, which has no negative acknowledgement), never with a
// success. Publishes are not serialised on the JetStream round trip: each
// is sent to the backbone from the reader goroutine, in arrival order (so a
// connection's publishes are stored in the order sent, across topics), and
// up to ReceiveMaximum of them await their store confirmation at once.
// PUBACKs leave in the order the PUBLISHes arrived, as MQTT 5 §4.6 requires.
//
// # Queues and overflow
//
// Each connection has one reader goroutine and, only while it has something
// to write, one writer goroutine, which batches packets through a pooled
// bufio.Writer and flushes when its queue is empty. Live messages reach a
// connection through hub.Subscriber.Deliver, which never blocks: it puts the
// message on the connection's queue, bounded by QueueSize messages. When the
// queue is full, a QoS 0 message is dropped (counted in Stats.Dropped); a
// QoS 1 message evicts the oldest queued QoS 0 message if there is one, and
// otherwise the client is a slow consumer: it is sent DISCONNECT 0x97 Quota
// exceeded (the limit that was hit is an administrative one, the queue;
// 0x89 Server busy would wrongly blame the server) and the connection is
// closed (counted in Stats.SlowConsumers). QoS 1 messages wait in the queue
// while the client's in-flight window (its Receive Maximum; ReceiveMaximum
// for 3.1.1) is full. Retained messages sent after a SUBSCRIBE are already
// in memory when they are queued and do not count against the bound.
//
// # Codec
//
// Packets are encoded and decoded with the packets package of mochi-mqtt
// (only the codec, not its broker): a maintained MQTT 3.1.1/5 codec with
// its own fuzz and conformance tests, which saves Herald from owning the
// subtle parts of the wire format (properties, variable byte integers,
// UTF-8 rules). Herald keeps the framing: readPacket bounds the remaining
// length by MaxPacketSize before allocating anything, rejects packet types
// a client may not send, and turns a panic of the decoder into a malformed
// packet, so a hostile packet closes one connection and nothing else.
package mqtt
