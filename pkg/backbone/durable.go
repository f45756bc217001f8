package backbone

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/nats-io/nats.go/jetstream"
)

// DurableConfig configures a durable consumer of a tenant stream.
type DurableConfig struct {
	// Name names the consumer; every reader of the same name shares it.
	Name        string
	Description string
	// After is the last sequence the consumer's owner has applied: the
	// next message delivered is the first after it. A consumer that has
	// delivered beyond After — messages its owner fetched and never applied
	// (it crashed), which would otherwise come back only after AckWait,
	// behind newer ones — is started again at After+1.
	After uint64
	// AckWait is how long a delivered message waits for its
	// acknowledgement before it is delivered again.
	AckWait time.Duration
	// MaxAckPending bounds the messages delivered and not acknowledged.
	MaxAckPending int
}

// Batch is what one Fetch of a durable consumer returns.
type Batch struct {
	// Messages are the stored messages fetched, decoded, in ascending
	// sequence, each once (a redelivery can arrive among newer messages).
	Messages []*message.Message
	// Skipped are the fetched messages that are not Herald messages
	// (undecodable): nothing to apply; acknowledged with the batch.
	Skipped []Skipped
	// Fetched counts the stream messages fetched, decoded or not.
	Fetched int
	// Pending is what the stream holds for the consumer beyond the batch.
	Pending uint64

	ack func() error
}

// Skipped is a fetched message that could not be decoded.
type Skipped struct {
	Subject string
	Err     error
}

// Ack acknowledges the batch: everything up to its highest sequence
// (acknowledgements are cumulative). A lost acknowledgement only means a
// redelivery, which an owner applying by sequence skips.
func (b Batch) Ack() error {
	if b.ack == nil {
		return nil
	}
	return b.ack()
}

// Consumer is a durable consumer of one tenant stream: it delivers the
// stream in order from where its owner left off, at least once.
type Consumer interface {
	// Fetch returns what is available now, up to max messages, or else
	// (max above 1), waiting up to wait, the first message to arrive and
	// what is available with it (an empty batch when nothing came). It
	// never abandons a delivery half-way, so no message is left delivered
	// but unseen.
	Fetch(max int, wait time.Duration) (Batch, error)
	// Check reports whether the consumer still exists: ErrNoStream when
	// its stream was deleted (which deletes its consumers).
	Check(ctx context.Context) error
}

// Durable opens the tenant's durable consumer cfg.Name, positioned after
// cfg.After (ErrNoStream for a tenant without a stream).
func (b *Backbone) Durable(ctx context.Context, tenant string, cfg DurableConfig) (Consumer, error) {
	if !ValidTenant(tenant) {
		return nil, ErrBadTenant
	}
	stream := StreamName(tenant)
	want := jetstream.ConsumerConfig{
		Durable:       cfg.Name,
		Description:   cfg.Description,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: cfg.MaxAckPending,
	}
	if cfg.After > 0 {
		want.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		want.OptStartSeq = cfg.After + 1
	}
	c, err := b.js.Consumer(ctx, stream, cfg.Name)
	switch {
	case err == nil:
		info := c.CachedInfo()
		if info.Delivered.Stream <= cfg.After && info.Config.AckPolicy == want.AckPolicy {
			// Nothing delivered beyond After: continue where it is (the
			// start policy of an existing consumer cannot change).
			want.DeliverPolicy, want.OptStartSeq = info.Config.DeliverPolicy, info.Config.OptStartSeq
			c, err := b.js.CreateOrUpdateConsumer(ctx, stream, want)
			if err != nil {
				return nil, unavailable(err)
			}
			return &durable{b: b, tenant: tenant, c: c}, nil
		}
		// Ahead of the owner, or made by an older version that
		// acknowledged each message (an ack policy cannot be updated).
		if err := b.js.DeleteConsumer(ctx, stream, cfg.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("%w: delete consumer: %w", ErrUnavailable, err)
		}
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, ErrNoStream
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("%w: consumer: %w", ErrUnavailable, err)
	}
	c, err = b.js.CreateOrUpdateConsumer(ctx, stream, want)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, ErrNoStream
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return &durable{b: b, tenant: tenant, c: c}, nil
}

// durable is a Consumer over a JetStream pull consumer that acknowledges
// cumulatively (AckAll).
type durable struct {
	b      *Backbone
	tenant string
	c      jetstream.Consumer
}

func (d *durable) Fetch(max int, wait time.Duration) (Batch, error) {
	jms, err := d.fetch(max, wait)
	if err != nil {
		return Batch{}, unavailable(err)
	}
	return d.batch(jms), nil
}

func (d *durable) fetch(max int, wait time.Duration) ([]jetstream.Msg, error) {
	jms, err := drainBatch(d.c.FetchNoWait(max))
	if err != nil || len(jms) > 0 || max == 1 {
		return jms, err
	}
	if jms, err = drainBatch(d.c.Fetch(1, jetstream.FetchMaxWait(wait))); err != nil || len(jms) == 0 {
		return jms, err
	}
	more, err := drainBatch(d.c.FetchNoWait(max - 1))
	return append(jms, more...), err
}

// batch decodes fetched messages; its ack is that of the message of the
// highest stream sequence.
func (d *durable) batch(jms []jetstream.Msg) Batch {
	b := Batch{Fetched: len(jms)}
	var last jetstream.Msg
	var lastSeq uint64
	for _, jm := range jms {
		m, err := d.b.DecodeStored(d.tenant, jm)
		var seq uint64
		if err == nil {
			seq = m.Seq
		} else if md, merr := jm.Metadata(); merr == nil {
			seq = md.Sequence.Stream
		}
		if last == nil || seq > lastSeq {
			last, lastSeq = jm, seq
		}
		if err != nil {
			b.Skipped = append(b.Skipped, Skipped{Subject: jm.Subject(), Err: err})
			continue
		}
		b.Messages = append(b.Messages, m)
	}
	slices.SortFunc(b.Messages, func(x, y *message.Message) int { return cmp.Compare(x.Seq, y.Seq) })
	b.Messages = slices.CompactFunc(b.Messages, func(x, y *message.Message) bool { return x.Seq == y.Seq })
	if n := len(jms); n > 0 {
		if md, err := jms[n-1].Metadata(); err == nil {
			b.Pending = md.NumPending
		}
	}
	if last != nil {
		b.ack = last.Ack
	}
	return b
}

func (d *durable) Check(ctx context.Context) error {
	if _, err := d.c.Info(ctx); err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			if _, serr := d.b.State(ctx, d.tenant); errors.Is(serr, ErrNoStream) {
				return ErrNoStream
			}
		}
		return fmt.Errorf("%w: consumer info: %w", ErrUnavailable, err)
	}
	return nil
}

func drainBatch(batch jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	return out, batch.Error()
}
