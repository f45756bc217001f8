package backbone

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/heraldmq/herald/pkg/control"
)

// memControl is the control plane of a Memory backbone: subject-matched
// subscriptions (NATS wildcards), each with a bounded buffer that drops
// what does not fit, as NATS does for a slow consumer.
type memControl struct {
	mu   sync.Mutex
	subs map[*memCtlSub]struct{}
}

type memCtlSub struct {
	pattern string
	deliver func(*control.Msg) // must not block
}

func (c *memControl) init() { c.subs = map[*memCtlSub]struct{}{} }

func (c *memControl) add(pattern string, deliver func(*control.Msg)) *memCtlSub {
	s := &memCtlSub{pattern: pattern, deliver: deliver}
	c.mu.Lock()
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	return s
}

func (c *memControl) remove(s *memCtlSub) {
	c.mu.Lock()
	delete(c.subs, s)
	c.mu.Unlock()
}

// send delivers a message to the matching subscriptions and reports how
// many there were.
func (c *memControl) send(subject string, header map[string]string, data []byte, respond func(map[string]string, []byte) error) int {
	c.mu.Lock()
	var to []*memCtlSub
	for s := range c.subs {
		if covers(s.pattern, subject) {
			to = append(to, s)
		}
	}
	c.mu.Unlock()
	for _, s := range to {
		s.deliver(control.NewMsg(subject, header, data, respond))
	}
	return len(to)
}

// MemoryControl is the control plane of a Memory backbone, with the
// methods of Control.
type MemoryControl struct{ c *memControl }

// Control returns the backbone's control plane.
func (m *Memory) Control() *MemoryControl { return &MemoryControl{c: &m.ctl} }

// Publish sends a message that expects no answer.
func (mc *MemoryControl) Publish(subject string, header map[string]string, data []byte) error {
	mc.c.send(subject, header, data, nil)
	return nil
}

// Request sends a request and returns the first answer.
func (mc *MemoryControl) Request(ctx context.Context, subject string, header map[string]string, data []byte) (*control.Msg, error) {
	answers := make(chan *control.Msg, 1)
	n := mc.c.send(subject, header, data, func(h map[string]string, d []byte) error {
		select {
		case answers <- control.NewMsg("", h, d, nil):
		default:
		}
		return nil
	})
	if n == 0 {
		return nil, fmt.Errorf("%w: %s", control.ErrNoResponders, subject)
	}
	select {
	case a := <-answers:
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Gather sends a request and returns the answers that arrive within window.
func (mc *MemoryControl) Gather(ctx context.Context, subject string, data []byte, window time.Duration) ([]*control.Msg, error) {
	answers := make(chan *control.Msg, 256)
	mc.c.send(subject, nil, data, func(h map[string]string, d []byte) error {
		select {
		case answers <- control.NewMsg("", h, d, nil):
		default:
		}
		return nil
	})
	timer := time.NewTimer(window)
	defer timer.Stop()
	var out []*control.Msg
	for {
		select {
		case a := <-answers:
			out = append(out, a)
		case <-timer.C:
			return out, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Subscribe calls handler for each message on subject from a goroutine of
// the subscription's own.
func (mc *MemoryControl) Subscribe(subject string, handler func(*control.Msg)) (*control.Sub, error) {
	ch := make(chan *control.Msg, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ch {
			handler(m)
		}
	}()
	var mu sync.Mutex
	closed := false
	s := mc.c.add(subject, func(m *control.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return
		}
		select {
		case ch <- m:
		default:
		}
	})
	return control.NewSub(func() error {
		mc.c.remove(s)
		mu.Lock()
		closed = true
		close(ch)
		mu.Unlock()
		<-done
		return nil
	}), nil
}

// NewInbox returns an inbox buffering up to size messages; beyond, messages
// are dropped.
func (mc *MemoryControl) NewInbox(size int) *control.Inbox {
	ch := make(chan *control.Msg, size)
	subscribe := func(subject string) (*control.Sub, error) {
		var cs *control.Sub
		var s *memCtlSub
		ready := make(chan struct{})
		s = mc.c.add(subject, func(m *control.Msg) {
			<-ready
			m.Sub = cs
			select {
			case ch <- m:
			default:
			}
		})
		cs = control.NewSub(func() error {
			mc.c.remove(s)
			return nil
		})
		close(ready)
		return cs, nil
	}
	return control.NewInbox(ch, subscribe, func() {})
}
