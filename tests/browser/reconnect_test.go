package browser

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// streamSeqs returns, in order, the sequences of the dev tenant's stream
// whose subject matches subject (a NATS filter).
func streamSeqs(t *testing.T, natsURL, subject string) []uint64 {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "HERALD_dev")
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	var seqs []uint64
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			t.Fatalf("reading the stream after %d messages: %v", len(seqs), err)
		}
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, md.Sequence.Stream)
		if md.NumPending == 0 {
			return seqs
		}
	}
}

// TestSSEReconnectUnderLoad ensures that while messages are published at
// 300 per second for 10 seconds, SSE clients that keep dropping their
// stream after random short intervals and resuming with Last-Event-ID on
// the other edge each end with exactly the stream's matching messages: no
// gap, no duplicate, in order.
func TestSSEReconnectUnderLoad(t *testing.T) {
	c := startCluster(t)
	const (
		rate     = 300 // messages per second, noise included
		duration = 10 * time.Second
		clients  = 4
	)
	run := fmt.Sprintf("load%d", time.Now().UnixNano())
	pub := pahoConnect(t, c.A.MQTT, "load-pub")

	var final atomic.Uint64 // the last matching sequence, once publishing ended
	type result struct {
		seqs       []uint64
		reconnects int
		err        error
	}
	results := make([]result, clients)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for k := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[k]
			// "0" resumes from before the first message: each client must
			// end with the whole matching history.
			last := "0"
			edges := []edge{c.A, c.B}
			var lastSeq uint64
			for ctx.Err() == nil {
				if f := final.Load(); f != 0 && lastSeq >= f {
					return
				}
				base := edges[(k+r.reconnects)%2].HTTP
				s, err := openSSE(ctx, base, "topic="+run+"/%23", last)
				if err != nil {
					r.err = err
					return
				}
				hold := time.NewTimer(time.Duration(50+rand.IntN(400)) * time.Millisecond)
			read:
				for {
					select {
					case ev, ok := <-s.events:
						if !ok {
							r.err = fmt.Errorf("stream on %s ended by the edge", base)
							break read
						}
						if ev.Event != "message" {
							r.err = fmt.Errorf("unexpected %q event: %s", ev.Event, ev.Data)
							break read
						}
						p, err := message.ParsePosition(ev.ID)
						if err != nil {
							r.err = err
							break read
						}
						r.seqs, last, lastSeq = append(r.seqs, p.Seq), ev.ID, p.Seq
						if f := final.Load(); f != 0 && p.Seq >= f {
							break read
						}
					case <-hold.C:
						break read
					case <-ctx.Done():
						break read
					}
				}
				hold.Stop()
				s.close()
				if r.err != nil {
					return
				}
				r.reconnects++
			}
			r.err = ctx.Err()
		}()
	}

	start := time.Now()
	tick := time.NewTicker(time.Second / rate)
	total := int(duration.Seconds()) * rate
	for i := range total {
		<-tick.C
		topic := run + "/" + strconv.Itoa(i%3)
		if i%4 == 3 {
			topic = "noise/" + run // does not match: the sequences the clients see have holes
		}
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	tick.Stop()
	elapsed := time.Since(start)
	want := streamSeqs(t, c.NATSURL, "herald.in.dev."+run+".>")
	if len(want) != total-total/4 {
		t.Fatalf("the stream holds %d matching messages, want %d", len(want), total-total/4)
	}
	final.Store(want[len(want)-1])
	wg.Wait()

	for k, r := range results {
		if r.err != nil {
			t.Fatalf("client %d after %d reconnects: %v", k, r.reconnects, r.err)
		}
		if !slices.Equal(r.seqs, want) {
			for i := range min(len(r.seqs), len(want)) {
				if r.seqs[i] != want[i] {
					t.Fatalf("client %d: message %d has seq %d, want %d (gap or duplicate)", k, i, r.seqs[i], want[i])
				}
			}
			t.Fatalf("client %d received %d messages, want %d", k, len(r.seqs), len(want))
		}
		if r.reconnects < 10 {
			t.Fatalf("client %d reconnected only %d times: the test proves little", k, r.reconnects)
		}
	}
	counts := make([]int, clients)
	for k, r := range results {
		counts[k] = r.reconnects
	}
	t.Logf("published %d messages (%d matching) in %s (%.0f/s); %d clients, reconnects %v, each got exactly the %d matching in order",
		total, len(want), elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), clients, counts, len(want))
}
