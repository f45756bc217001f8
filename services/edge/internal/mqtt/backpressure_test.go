package mqtt

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// counter is an MQTT 3.1.1 subscriber that counts what it receives, per
// publisher and message number, as fast as its client hands it over (or
// after a pause per message, for a slow reader).
type counter struct {
	client mqtt3.Client
	total  atomic.Int64
	mu     sync.Mutex
	seen   map[uint64]bool
}

func (e *env) counter(id, filter string, pause time.Duration) *counter {
	e.t.Helper()
	c := &counter{seen: map[uint64]bool{}}
	opts := mqtt3.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID(id).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(waitFor).SetProtocolVersion(4)
	c.client = mqtt3.NewClient(opts)
	if tok := c.client.Connect(); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		e.t.Fatalf("connect %s: %v", id, tok.Error())
	}
	e.t.Cleanup(func() { c.client.Disconnect(100) })
	tok := c.client.Subscribe(filter, 0, func(_ mqtt3.Client, m mqtt3.Message) {
		if pause > 0 {
			time.Sleep(pause)
		}
		key := binary.BigEndian.Uint64(m.Payload())
		c.mu.Lock()
		if !c.seen[key] {
			c.seen[key] = true
			c.total.Add(1)
		}
		c.mu.Unlock()
	})
	if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		e.t.Fatalf("subscribe %s: %v", id, tok.Error())
	}
	return c
}

// flood has pubs MQTT 3.1.1 clients publish n QoS 0 messages each of size
// bytes under prefix/<publisher>, as fast as their connections take them,
// and returns once every publish was written to its socket.
func (e *env) flood(prefix string, pubs, n, size int) {
	e.t.Helper()
	clients := make([]mqtt3.Client, pubs)
	for i := range clients {
		clients[i], _ = e.v3("tcp://"+e.addr, fmt.Sprintf("%s-pub-%d", prefix, i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, pubs)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, size)
			var last mqtt3.Token
			for k := range n {
				binary.BigEndian.PutUint64(payload, uint64(i)<<32|uint64(k))
				last = c.Publish(fmt.Sprintf("%s/%d", prefix, i), 0, false, append([]byte(nil), payload...))
			}
			if !last.WaitTimeout(2*time.Minute) || last.Error() != nil {
				errs <- fmt.Errorf("publisher %d: %v", i, last.Error())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		e.t.Fatal(err)
	}
}

// settle waits until c has want messages, or until its count has not
// moved for quiet; it returns the count.
func (c *counter) settle(want int64, quiet time.Duration) int64 {
	last, since := c.total.Load(), time.Now()
	for {
		n := c.total.Load()
		if n >= want {
			return n
		}
		if n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > quiet {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestQoS0FloodReachesFastSubscribers ensures that publishers flooding QoS
// 0 faster than the edge can deliver are slowed rather than having their
// messages dropped: two subscribers reading at full speed receive every one
// of the 10 × 10,000 messages.
func TestQoS0FloodReachesFastSubscribers(t *testing.T) {
	if testing.Short() {
		t.Skip("a flood of 100,000 messages")
	}
	e := newEnv(t)
	const pubs, n = 10, 10000
	subs := []*counter{e.counter("fast-1", "flood/#", 0), e.counter("fast-2", "flood/#", 0)}
	e.flood("flood", pubs, n, 100)
	for i, s := range subs {
		if got := s.settle(pubs*n, 5*time.Second); got != pubs*n {
			t.Errorf("subscriber %d received %d of %d messages (edge stats %+v, stream last %d)", i+1, got, pubs*n,
				e.srv.Stats(), e.lastSeq())
		}
	}
}

// TestSlowSubscriberAloneLoses ensures a subscriber too slow for the flood
// loses messages under its own queue's policy (QoS 0 shed) without holding
// the publishers back to its pace, while a subscriber reading at full
// speed beside it receives every message.
func TestSlowSubscriberAloneLoses(t *testing.T) {
	if testing.Short() {
		t.Skip("a flood of 100,000 messages")
	}
	e := newEnv(t)
	const pubs, n = 10, 10000
	fast := e.counter("fast", "flood/#", 0)
	slow := e.counter("slow", "flood/#", 5*time.Millisecond)
	start := time.Now()
	e.flood("flood", pubs, n, 100)
	// Held to the slow reader's pace (200 messages a second), the flood
	// would take more than 8 minutes.
	if took := time.Since(start); took > time.Minute {
		t.Errorf("the flood took %s: the slow subscriber held the publishers back", took)
	}
	if got := fast.settle(pubs*n, 5*time.Second); got != pubs*n {
		t.Errorf("the fast subscriber received %d of %d messages (edge stats %+v)", got, pubs*n, e.srv.Stats())
	}
	if st := e.srv.Stats(); st.Dropped == 0 {
		t.Errorf("nothing dropped for the slow subscriber (it has %d so far): stats %+v", slow.total.Load(), st)
	}
}
