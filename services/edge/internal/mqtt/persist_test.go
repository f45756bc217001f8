package mqtt

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// embeddedStore opens a session store in a file of the test's own; it
// closes at the end of the test.
func embeddedStore(t testing.TB) *store.Embedded {
	t.Helper()
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// twoEdges is two edges over one NATS server and one session store.
func twoEdges(t *testing.T) (a, b *env, st store.Store) {
	t.Helper()
	st = embeddedStore(t)
	withStore := func(_ *Config, n *node.Config) { n.State = st }
	ns := testserver.NATS(t)
	return newEdge(t, ns, "edge-a", withStore), newEdge(t, ns, "edge-b", withStore), st
}

func expiry(s uint32) *paho.ConnectProperties {
	return &paho.ConnectProperties{SessionExpiryInterval: &s}
}

// TestPersistentSessionAcrossEdges ensures a session with an expiry
// interval resumes on another edge with SessionPresent, its subscriptions,
// and every QoS 1 and 2 message published while it was away, in order,
// once each, QoS 0 ones left out.
func TestPersistentSessionAcrossEdges(t *testing.T) {
	a, b, st := twoEdges(t)
	c, ack, err := a.dialV5(&paho.Connect{ClientID: "roamer", KeepAlive: 30, Properties: expiry(300)})
	if err != nil || ack.SessionPresent {
		t.Fatalf("first connect: %v %+v", err, ack)
	}
	c.subscribe(t, paho.SubscribeOptions{Topic: "off/#", QoS: 2})
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	rec := waitRecord(t, st, "roamer", func(s *store.Session) bool { return !s.DisconnectedAt.IsZero() })
	if len(rec.Subscriptions) != 1 || rec.Will != nil {
		t.Fatalf("saved %+v", rec)
	}

	pub := a.v5("pub")
	var want []string
	for i := range 60 {
		qos := byte(i % 3)
		p := fmt.Sprintf("m%d", i)
		pub.publish(t, &paho.Publish{Topic: fmt.Sprintf("off/%d", i%4), QoS: qos, Payload: []byte(p)})
		if qos > 0 {
			want = append(want, p)
		}
	}

	c2, ack, err := b.dialV5(&paho.Connect{ClientID: "roamer", KeepAlive: 30, Properties: expiry(300)})
	if err != nil || !ack.SessionPresent {
		t.Fatalf("resume: %v %+v", err, ack)
	}
	t.Cleanup(func() { _ = c2.Disconnect(&paho.Disconnect{}) })
	for i, w := range want {
		m := c2.next(t)
		if string(m.Payload) != w || m.QoS != byte(i%2)+1 {
			t.Fatalf("message %d: %s QoS %d, want %s QoS %d", i, m.Payload, m.QoS, w, i%2+1)
		}
	}
	// Live again, through the restored subscription.
	pub.publish(t, &paho.Publish{Topic: "off/live", QoS: 1, Payload: []byte("live")})
	if m := c2.next(t); string(m.Payload) != "live" {
		t.Fatalf("after the replay got %s, want live", m.Payload)
	}
}

// TestCleanStartDiscardsSession ensures a clean start ends the stored
// session: no SessionPresent, no subscriptions, no offline messages.
func TestCleanStartDiscardsSession(t *testing.T) {
	a, b, st := twoEdges(t)
	c, _, err := a.dialV5(&paho.Connect{ClientID: "fresh", KeepAlive: 30, Properties: expiry(300)})
	if err != nil {
		t.Fatal(err)
	}
	c.subscribe(t, paho.SubscribeOptions{Topic: "x", QoS: 1})
	_ = c.Disconnect(&paho.Disconnect{})
	waitRecord(t, st, "fresh", func(s *store.Session) bool { return !s.DisconnectedAt.IsZero() })
	a.v5("pub").publish(t, &paho.Publish{Topic: "x", QoS: 1, Payload: []byte("old")})
	c2, ack, err := b.dialV5(&paho.Connect{ClientID: "fresh", KeepAlive: 30, CleanStart: true})
	if err != nil || ack.SessionPresent {
		t.Fatalf("clean start: %v %+v", err, ack)
	}
	defer c2.Disconnect(&paho.Disconnect{})
	select {
	case m := <-c2.msgs:
		t.Fatalf("got %s from a discarded session", m.Payload)
	case <-time.After(200 * time.Millisecond): // absence has no signal
	}
	if _, err := st.LoadSession(context.Background(), "dev", "fresh"); err != store.ErrNoSession {
		t.Fatalf("record after a clean session: %v", err)
	}
}

// TestWillDelayLeftToSessionService ensures an abnormal close of a
// connection whose will has a delay publishes nothing from the edge and
// leaves the will, with its delay, in the disconnected session's record.
func TestWillDelayLeftToSessionService(t *testing.T) {
	a, _, st := twoEdges(t)
	watcher := a.v5("watcher")
	watcher.subscribe(t, paho.SubscribeOptions{Topic: "wills/#", QoS: 1})
	delay := uint32(30)
	c, _, err := a.dialV5(&paho.Connect{ClientID: "dying", KeepAlive: 30, WillMessage: &paho.WillMessage{Topic: "wills/dying", Payload: []byte("gone"), QoS: 1},
		WillProperties: &paho.WillProperties{WillDelayInterval: &delay}, Properties: expiry(300)})
	if err != nil {
		t.Fatal(err)
	}
	waitRecord(t, st, "dying", func(s *store.Session) bool { return s.Will != nil && s.Edge != "" })
	_ = c.Disconnect(&paho.Disconnect{ReasonCode: codeDisconnectWithWill})
	rec := waitRecord(t, st, "dying", func(s *store.Session) bool { return !s.DisconnectedAt.IsZero() })
	if rec.Will == nil || rec.Will.Delay != 30*time.Second || rec.ConnectedTo != "" || rec.Edge != "" {
		t.Fatalf("record %+v will %+v", rec, rec.Will)
	}
	select {
	case m := <-watcher.msgs:
		t.Fatalf("the edge published the delayed will: %s", m.Payload)
	case <-time.After(200 * time.Millisecond): // absence has no signal
	}
}

// waitRecord polls the store until the session record satisfies ok.
func waitRecord(t *testing.T, st store.Store, clientID string, ok func(*store.Session) bool) *store.Session {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		s, err := st.LoadSession(context.Background(), "dev", clientID)
		if err == nil && ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s: %+v %v", clientID, s, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
