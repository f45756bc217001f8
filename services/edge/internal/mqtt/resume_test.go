package mqtt

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// gatedStore runs hook, once armed, inside the next replay-buffer read:
// in the middle of a resume's replay.
type gatedStore struct {
	store.Store
	mu   sync.Mutex
	hook func()
}

func (g *gatedStore) Replay(ctx context.Context, tenant string, after uint64, max int) (store.ReplayPage, error) {
	g.mu.Lock()
	hook := g.hook
	g.hook = nil
	g.mu.Unlock()
	if hook != nil {
		hook()
	}
	return g.Store.Replay(ctx, tenant, after, max)
}

// TestResumeEndedMidReplay ensures a connection that ends while its
// resume's replay is still being read saves no cursor beyond the position
// it loaded, even though live messages held meanwhile came after the ones
// the replay owes: the next connection gets every message, the replayed
// ones included.
func TestResumeEndedMidReplay(t *testing.T) {
	emb := embeddedStore(t)
	st := &gatedStore{Store: emb}
	e := newEnv(t, func(_ *Config, n *node.Config) { n.State = st })

	c, _, err := e.dialV5(&paho.Connect{ClientID: "resumer", KeepAlive: 30, Properties: expiry(300)})
	if err != nil {
		t.Fatal(err)
	}
	c.subscribe(t, paho.SubscribeOptions{Topic: "r/#", QoS: 1})
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, emb, "resumer", func(s *store.Session) bool { return !s.DisconnectedAt.IsZero() })
	pub := e.v5("pub")
	var want []string
	send := func(i int) {
		p := fmt.Sprintf("m%d", i)
		pub.publish(t, &paho.Publish{Topic: "r/x", QoS: 1, Payload: []byte(p)})
		want = append(want, p)
	}
	for i := range 5 { // owed by the replay
		send(i)
	}

	subject := e.bb.Config().ClientControlSubject("dev", "resumer")
	next := make(chan *v5, 1)
	st.mu.Lock()
	st.hook = func() {
		// Live messages after the replayed ones, held by the resuming
		// connection...
		for i := 5; i < 8; i++ {
			send(i)
		}
		time.Sleep(200 * time.Millisecond)
		e.srv.mu.Lock()
		old := e.srv.clients[subject]
		e.srv.mu.Unlock()
		// ...then a newer connection takes the session over, which ends
		// this one before its replay is queued.
		go func() {
			c2, ack, err := e.dialV5(&paho.Connect{ClientID: "resumer", KeepAlive: 30, Properties: expiry(300)})
			if err != nil || !ack.SessionPresent {
				t.Errorf("second resume: %v %+v", err, ack)
				next <- nil
				return
			}
			next <- c2
		}()
		for deadline := time.Now().Add(waitFor); ; {
			old.mu.Lock()
			closing := old.closing
			old.mu.Unlock()
			if closing {
				return
			}
			if time.Now().After(deadline) {
				t.Error("the resuming connection was not taken over")
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	st.mu.Unlock()

	if _, _, err := e.dialV5(&paho.Connect{ClientID: "resumer", KeepAlive: 30, Properties: expiry(300)}); err != nil {
		t.Fatal(err)
	}
	c2 := <-next
	if c2 == nil {
		t.FailNow()
	}
	t.Cleanup(func() { _ = c2.Disconnect(&paho.Disconnect{}) })
	for i, w := range want {
		if m := c2.next(t); string(m.Payload) != w {
			t.Fatalf("message %d after the takeover: %s, want %s", i, m.Payload, w)
		}
	}
}
