package backbone

import (
	"context"
	"time"
)

// memCons is a durable consumer of a Memory backbone: what it delivered
// and what was acknowledged, and when it last delivered (a delivery not
// acknowledged within AckWait is delivered again).
type memCons struct {
	delivered, acked uint64
	at               time.Time
	ackWait          time.Duration
}

// memDurable is a Consumer of a Memory backbone.
type memDurable struct {
	m      *Memory
	tenant string
	key    string
}

// Durable opens the tenant's durable consumer cfg.Name, positioned after
// cfg.After, as Backbone.Durable does.
func (m *Memory) Durable(_ context.Context, tenant string, cfg DurableConfig) (Consumer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.streamLocked(tenant, false); err != nil {
		return nil, err
	}
	if m.durables == nil {
		m.durables = map[string]*memCons{}
	}
	key := tenant + "\x00" + cfg.Name
	c := m.durables[key]
	if c == nil || c.delivered > cfg.After {
		c = &memCons{delivered: cfg.After, acked: cfg.After}
		m.durables[key] = c
	}
	c.ackWait = cfg.AckWait
	return &memDurable{m: m, tenant: tenant, key: key}, nil
}

func (d *memDurable) Fetch(max int, wait time.Duration) (Batch, error) {
	deadline := time.Now().Add(wait)
	for {
		b, err := d.take(max)
		if err != nil || b.Fetched > 0 || max == 1 || !time.Now().Before(deadline) {
			return b, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// take delivers what the stream holds after the consumer's position.
func (d *memDurable) take(limit int) (Batch, error) {
	m := d.m
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.streamLocked(d.tenant, false)
	if err != nil {
		return Batch{}, err
	}
	c := m.durables[d.key]
	if c == nil {
		return Batch{}, ErrNoStream
	}
	if c.acked < c.delivered && c.ackWait > 0 && time.Since(c.at) >= c.ackWait {
		c.delivered = c.acked
	}
	var b Batch
	for _, msg := range s.msgs {
		if msg.Seq <= c.delivered {
			continue
		}
		if len(b.Messages) == limit {
			break
		}
		cp := *msg
		b.Messages = append(b.Messages, &cp)
	}
	if n := len(b.Messages); n > 0 {
		last := b.Messages[n-1].Seq
		c.delivered, c.at = last, time.Now()
		b.Fetched, b.Pending = n, s.last-last
		b.ack = func() error {
			m.mu.Lock()
			c.acked = max(c.acked, last)
			m.mu.Unlock()
			return nil
		}
	}
	return b, nil
}

func (d *memDurable) Check(context.Context) error {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if _, err := d.m.streamLocked(d.tenant, false); err != nil {
		return err
	}
	if d.m.durables[d.key] == nil {
		return ErrNoStream
	}
	return nil
}
