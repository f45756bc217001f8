package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

const waitFor = 5 * time.Second

// env is one edge's MQTT server over a real embedded NATS with JetStream.
type env struct {
	t     testing.TB
	bb    *backbone.Backbone
	nc    *nats.Conn
	node  *node.Node
	srv   *Server
	addr  string // MQTT over TCP
	wsURL string // MQTT over WebSocket
}

// envOption refines the MQTT server's configuration and its core's. A
// node.Config.State that keeps sessions and edge leases (a store.Store)
// is also the server's session writer.
type envOption func(*Config, *node.Config)

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	return newEdge(t, testserver.NATS(t), "edge-test", opts...)
}

// newEdge is one edge named id over the NATS server ns, which several
// edges may share.
func newEdge(t testing.TB, ns *server.Server, id string, opts ...envOption) *env {
	t.Helper()
	return newEdgeOn(t, testserver.NATSConn(t, ns), id, opts...)
}

// newEdgeOn is one edge named id on the NATS connection nc.
func newEdgeOn(t testing.TB, nc *nats.Conn, id string, opts ...envOption) *env {
	t.Helper()
	bb, err := backbone.New(nc, backbone.Config{MemoryStorage: true, MaxBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var n *node.Node
	live := bb.NewLive(backbone.LiveConfig{}, func(m *message.Message) { n.Dispatch(m) })
	ncfg := node.Config{ID: id, Stream: bb, Interest: live, Auth: auth.Anonymous{Tenant: "dev"},
		Log: slog.New(slog.DiscardHandler)}
	var cfg Config
	for _, o := range opts {
		o(&cfg, &ncfg)
	}
	if n, err = node.New(ncfg); err != nil {
		t.Fatal(err)
	}
	deps := Deps{Control: bb.Control(), ClientSubject: bb.Config().ClientControlSubject}
	if st, ok := ncfg.State.(interface {
		store.SessionStore
		store.EdgeLeaseStore
	}); ok {
		deps.Sessions = store.NewEdgeWriter(st)
	}
	srv, err := New(cfg, n, deps)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()
	mux := http.NewServeMux()
	mux.Handle("GET /mqtt", srv.WebSocketHandler())
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Close()
		hs.Close()
		live.Close()
		if st := srv.Stats(); st.Connections != 0 {
			t.Errorf("%d connections left after Close", st.Connections)
		}
	})
	return &env{t: t, bb: bb, nc: nc, node: n, srv: srv, addr: l.Addr().String(),
		wsURL: "ws" + strings.TrimPrefix(hs.URL, "http") + "/mqtt"}
}

// lastSeq returns the last sequence of the dev tenant's stream.
func (e *env) lastSeq() uint64 {
	e.t.Helper()
	st, err := e.bb.State(context.Background(), "dev")
	if err != nil {
		e.t.Fatal(err)
	}
	return st.LastSeq
}

// v5 is a Paho MQTT 5 client and the messages it received.
type v5 struct {
	*paho.Client
	msgs        chan *paho.Publish
	disconnects chan *paho.Disconnect
}

func (e *env) v5(clientID string) *v5 {
	e.t.Helper()
	c, ack, err := e.dialV5(&paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30})
	if err != nil {
		e.t.Fatalf("connect %s: %v (%+v)", clientID, err, ack)
	}
	e.t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func (e *env) dialV5(cp *paho.Connect) (*v5, *paho.Connack, error) {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	c := &v5{msgs: make(chan *paho.Publish, 256), disconnects: make(chan *paho.Disconnect, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { c.disconnects <- d },
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	return c, ack, err
}

func (c *v5) subscribe(t testing.TB, opts ...paho.SubscribeOptions) *paho.Suback {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return sa
}

func (c *v5) publish(t testing.TB, p *paho.Publish) *paho.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	pr, err := c.Publish(ctx, p)
	if err != nil {
		t.Fatalf("publish %s: %v", p.Topic, err)
	}
	return pr
}

// expectDisconnect fails unless the server's DISCONNECT with code arrives
// within d; what says what was expected, for the failure.
func (c *v5) expectDisconnect(t *testing.T, code byte, d time.Duration, what string) {
	t.Helper()
	select {
	case got := <-c.disconnects:
		if got.ReasonCode != code {
			t.Fatalf("DISCONNECT %#x, want %#x", got.ReasonCode, code)
		}
	case <-time.After(d):
		t.Fatal(what)
	}
}

// next returns the next message received, failing after waitFor.
func (c *v5) next(t testing.TB) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message received")
		return nil
	}
}

// v3 connects a Paho MQTT 3.1.1 client to broker (tcp:// or ws://).
func (e *env) v3(broker, clientID string) (mqtt3.Client, chan mqtt3.Message) {
	e.t.Helper()
	msgs := make(chan mqtt3.Message, 256)
	opts := mqtt3.NewClientOptions().AddBroker(broker).SetClientID(clientID).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(waitFor).SetProtocolVersion(4).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { msgs <- m })
	c := mqtt3.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		e.t.Fatalf("v3 connect %s: %v", clientID, tok.Error())
	}
	e.t.Cleanup(func() { c.Disconnect(100) })
	return c, msgs
}

func wait3(t *testing.T, tok mqtt3.Token) {
	t.Helper()
	if !tok.WaitTimeout(waitFor) {
		t.Fatal("v3 operation timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatal(err)
	}
}

func next3(t *testing.T, msgs chan mqtt3.Message) mqtt3.Message {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message received")
		return nil
	}
}

// raw is a hand-driven MQTT connection for protocol-level tests.
type raw struct {
	t       testing.TB
	c       net.Conn
	r       *bufio.Reader
	version byte
}

func (e *env) raw() *raw {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &raw{t: e.t, c: c, r: bufio.NewReader(c), version: 5}
}

func (r *raw) send(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *raw) sendPacket(pk *packets.Packet) {
	r.t.Helper()
	pk.ProtocolVersion = r.version
	var b bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&b)
	case packets.Publish:
		err = pk.PublishEncode(&b)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&b)
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp:
		if pk.FixedHeader.Type == packets.Pubrel {
			pk.FixedHeader.Qos = 1
		}
		err = pk.PubackEncode(&b)
	case packets.Unsubscribe:
		err = pk.UnsubscribeEncode(&b)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.send(b.Bytes())
}

var rawClients atomic.Int64

// connect sends a CONNECT with a client identifier of its own and returns the CONNACK.
func (r *raw) connect(keepAlive uint16, props packets.Properties) *packets.Packet {
	r.t.Helper()
	return r.connectAs(fmt.Sprintf("raw-%d", rawClients.Add(1)), keepAlive, props)
}

func (r *raw) connectAs(clientID string, keepAlive uint16, props packets.Properties) *packets.Packet {
	r.t.Helper()
	r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: keepAlive,
			ClientIdentifier: clientID}, Properties: props})
	ack := r.read()
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		r.t.Fatalf("CONNACK expected, got %+v", ack)
	}
	return ack
}

// read reads one packet sent by the server.
func (r *raw) read() *packets.Packet {
	r.t.Helper()
	pk, err := r.tryRead()
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return pk
}

func (r *raw) tryRead() (*packets.Packet, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(waitFor))
	hb, err := r.r.ReadByte()
	if err != nil {
		return nil, err
	}
	n, _, err := packets.DecodeLength(r.r)
	if err != nil {
		return nil, err
	}
	pk := &packets.Packet{ProtocolVersion: r.version}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		return nil, err
	}
	pk.FixedHeader.Remaining = n
	buf := make([]byte, n)
	if _, err := io.ReadFull(r.r, buf); err != nil {
		return nil, err
	}
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(buf)
	case packets.Publish:
		err = pk.PublishDecode(buf)
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp:
		err = pk.PubackDecode(buf)
	case packets.Suback:
		err = pk.SubackDecode(buf)
	case packets.Unsuback:
		err = pk.UnsubackDecode(buf)
	case packets.Disconnect:
		err = pk.DisconnectDecode(buf)
		if pk.ProtocolVersion == 5 && n == 1 {
			pk.ReasonCode = buf[0]
		}
	}
	return pk, err
}

// expect reads the next packet and fails unless it has type typ.
func (r *raw) expect(typ byte) *packets.Packet {
	r.t.Helper()
	pk := r.read()
	if pk.FixedHeader.Type != typ {
		r.t.Fatalf("got %s, want %s", packets.PacketNames[pk.FixedHeader.Type], packets.PacketNames[typ])
	}
	return pk
}

// subscribe sends a SUBSCRIBE and returns the SUBACK.
func (r *raw) subscribe(filters ...packets.Subscription) *packets.Packet {
	r.t.Helper()
	r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: filters})
	return r.expect(packets.Suback)
}

// quiet fails if the server sends anything but a PINGRESP to a PINGREQ,
// or anything within a short while after it. Absence cannot be signalled:
// this bounded look is the check.
func (r *raw) quiet() {
	r.t.Helper()
	r.send([]byte{packets.Pingreq << 4, 0})
	r.expect(packets.Pingresp)
	_ = r.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := r.r.Peek(1); err == nil {
		pk := r.read()
		r.t.Fatalf("unexpected %s (id %d)", packets.PacketNames[pk.FixedHeader.Type], pk.PacketID)
	}
}

// expectClosed reads until the server closes the connection, returning
// the reason code of a DISCONNECT seen on the way (0 if none).
func (r *raw) expectClosed() byte {
	r.t.Helper()
	var reason byte
	for {
		pk, err := r.tryRead()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatal("connection not closed by the server")
			}
			return reason
		}
		if pk.FixedHeader.Type == packets.Disconnect {
			reason = pk.ReasonCode
		}
	}
}

// fakeState is a session store holding retained messages; hook, if set,
// runs inside Retained (after the subscription's live interest is in effect).
// Its state claims the stream's epoch and everything up to the highest
// sequence put as applied, as the session service would.
type fakeState struct {
	mu       sync.Mutex
	epoch    string
	applied  uint64
	retained []*message.Message
	hook     func()
}

func (f *fakeState) put(m *message.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retained = append(f.retained, m)
	f.applied = max(f.applied, m.Seq)
}

func (f *fakeState) setHook(hook func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = hook
}

func (f *fakeState) Retained(_ context.Context, tenant, filter string) ([]*message.Message, error) {
	f.mu.Lock()
	hook := f.hook
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*message.Message
	for _, m := range f.retained {
		if m.Tenant == tenant && topic.Match(filter, m.Topic) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (f *fakeState) Replay(context.Context, string, uint64, int) (store.ReplayPage, error) {
	return store.ReplayPage{}, nil
}

func (f *fakeState) State(context.Context, string) (store.ReplayState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return store.ReplayState{Epoch: f.epoch, Applied: f.applied}, nil
}
