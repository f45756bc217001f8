package mqtt

import (
	"context"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// narrowable authenticates the user "device" with the capabilities it
// holds now, and anyone else anonymously: a key that an operator narrows.
type narrowable struct {
	caps atomic.Pointer[authz.Capabilities]
}

func (a *narrowable) Authenticate(_ context.Context, c auth.Credentials) (auth.Identity, error) {
	if c.Username != "device" {
		return auth.Identity{Tenant: "dev", Anonymous: true}, nil
	}
	return auth.Identity{Tenant: "dev", Subject: "device", Credential: auth.CredentialAPIKey + "k1", Capabilities: *a.caps.Load()}, nil
}

func (a *narrowable) set(t *testing.T, caps ...string) {
	t.Helper()
	cs, err := authz.ParseCapabilities(caps)
	if err != nil {
		t.Fatal(err)
	}
	a.caps.Store(&cs)
}

// TestResumeReauthorized ensures a persistent session resumed by a
// credential that no longer allows some of its subscriptions loses them:
// they are not restored (plain or shared), their offline messages are not
// replayed, nothing of them is delivered live, and the session record is
// saved without them; the subscriptions still allowed resume as before.
func TestResumeReauthorized(t *testing.T) {
	st := embeddedStore(t)
	a := &narrowable{}
	a.set(t, "subscribe:a/#", "subscribe:b/#")
	e := newEnv(t, func(_ *Config, n *node.Config) { n.State, n.Auth = st, a })
	device := func() (*v5, *paho.Connack) {
		c, ack, err := e.dialV5(&paho.Connect{ClientID: "device-1", KeepAlive: 30, Properties: expiry(300),
			Username: "device", UsernameFlag: true})
		if err != nil {
			t.Fatalf("connect: %v %+v", err, ack)
		}
		return c, ack
	}
	c, _ := device()
	sa := c.subscribe(t, paho.SubscribeOptions{Topic: "a/#", QoS: 1}, paho.SubscribeOptions{Topic: "b/#", QoS: 1},
		paho.SubscribeOptions{Topic: "$share/g/b/+", QoS: 1})
	if !slices.Equal(sa.Reasons, []byte{1, 1, 1}) {
		t.Fatalf("SUBACK % x", sa.Reasons)
	}
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, st, "device-1", func(s *store.Session) bool { return !s.DisconnectedAt.IsZero() && len(s.Subscriptions) == 3 })

	pub := e.v5("pub")
	pub.publish(t, &paho.Publish{Topic: "b/offline", QoS: 1, Payload: []byte("b1")})
	pub.publish(t, &paho.Publish{Topic: "a/offline", QoS: 1, Payload: []byte("a1")})

	a.set(t, "subscribe:a/#")
	c, ack := device()
	if !ack.SessionPresent {
		t.Fatal("session not resumed")
	}
	if m := c.next(t); m.Topic != "a/offline" {
		t.Fatalf("first message %s %q, want a/offline", m.Topic, m.Payload)
	}
	pub.publish(t, &paho.Publish{Topic: "b/live", QoS: 1, Payload: []byte("b2")})
	pub.publish(t, &paho.Publish{Topic: "a/live", QoS: 1, Payload: []byte("a2")})
	if m := c.next(t); m.Topic != "a/live" {
		t.Fatalf("live message %s %q, want a/live", m.Topic, m.Payload)
	}
	select {
	case m := <-c.msgs:
		t.Fatalf("got %s %q", m.Topic, m.Payload)
	case <-time.After(200 * time.Millisecond):
	}
	rec := waitRecord(t, st, "device-1", func(s *store.Session) bool { return len(s.Subscriptions) == 1 })
	if subs := slices.Collect(maps.Keys(rec.Subscriptions)); subs[0] != "a/#" {
		t.Fatalf("record subscriptions %v, want [a/#]", subs)
	}
	if got := e.srv.Stats().UnauthorizedDropped; got != 2 {
		t.Fatalf("UnauthorizedDropped %d, want 2", got)
	}
	// The client may subscribe again: refused now, as any SUBSCRIBE.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if sa, _ := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "b/#", QoS: 1}}}); sa == nil ||
		!slices.Equal(sa.Reasons, []byte{0x87}) {
		t.Fatalf("SUBACK b/#: %+v, want 0x87", sa)
	}
}
