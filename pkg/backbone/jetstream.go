package backbone

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Backbone publishes messages to tenant streams and reads them back. It is
// safe for concurrent use. The NATS connection belongs to the caller.
type Backbone struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg Config

	mu     sync.Mutex
	epochs map[string]string // tenant -> epoch of its stream, as last seen

	tel *telemetry.Backbone // nil: no telemetry

	sends sendWindow
}

// sendWindow bounds the messages Send has handed to NATS that JetStream
// has not yet taken in. Send asks for no acknowledgement, so nothing else
// would slow its callers while JetStream falls behind: past its ingest
// queue (100,000 messages by default) JetStream drops what arrives, which
// a QoS 0 publisher never learns. So every sendMark-th message is sent
// with an acknowledgement (a mark); as one connection's messages are
// taken in in the order sent, a mark's acknowledgement says that those
// before it were too. Send waits for the oldest mark while more than
// Config.MaxPendingPublishes messages are unconfirmed: the callers (an
// MQTT connection's reader) are slowed, and nothing is dropped.
type sendWindow struct {
	mu    sync.Mutex
	since int                      // messages sent since the last mark
	marks []jetstream.PubAckFuture // unconfirmed marks, oldest first
}

// sendMark is the number of messages per mark: one acknowledgement per
// 64 messages costs little of what Send saves.
const sendMark = 64

// Option refines New.
type Option func(*Backbone)

// WithTelemetry records publish latency and, for sampled messages, a
// "jetstream.store" span per publish.
func WithTelemetry(p telemetry.Providers) Option {
	return func(b *Backbone) { b.tel = telemetry.NewBackbone(p) }
}

// New returns a backbone over nc.
func New(nc *nats.Conn, cfg Config, opts ...Option) (*Backbone, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout),
		jetstream.WithPublishAsyncMaxPending(cfg.MaxPendingPublishes))
	if err != nil {
		return nil, err
	}
	b := &Backbone{nc: nc, js: js, cfg: cfg, epochs: map[string]string{}}
	for _, o := range opts {
		o(b)
	}
	return b, nil
}

// Config returns the effective configuration.
func (b *Backbone) Config() Config { return b.cfg }

// EnsureTenant creates the tenant's stream if needed and returns its epoch.
func (b *Backbone) EnsureTenant(ctx context.Context, tenant string) (string, error) {
	b.mu.Lock()
	e, ok := b.epochs[tenant]
	b.mu.Unlock()
	if ok {
		return e, nil
	}
	info, err := ensureStream(ctx, b.js, b.cfg, tenant)
	if err != nil {
		return "", unavailable(err)
	}
	return b.remember(tenant, info), nil
}

func (b *Backbone) remember(tenant string, info *jetstream.StreamInfo) string {
	e := epochOf(info)
	b.mu.Lock()
	b.epochs[tenant] = e
	b.mu.Unlock()
	return e
}

// Forget drops the cached epoch of tenant, after a sign that its stream was
// recreated (a sequence going backwards).
func (b *Backbone) Forget(tenant string) {
	b.mu.Lock()
	delete(b.epochs, tenant)
	b.mu.Unlock()
}

// DeleteTenant deletes the tenant's stream, with its messages and its
// consumers, and forgets its epoch: a stream created for the tenant later
// starts a new history under a new epoch. A tenant without a stream is not
// an error.
func (b *Backbone) DeleteTenant(ctx context.Context, tenant string) error {
	if !ValidTenant(tenant) {
		return ErrBadTenant
	}
	err := b.js.DeleteStream(ctx, StreamName(tenant))
	b.Forget(tenant)
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("%w: delete stream of %s: %w", ErrUnavailable, tenant, err)
	}
	return nil
}

// Epoch returns the epoch of the tenant's stream without creating it.
func (b *Backbone) Epoch(ctx context.Context, tenant string) (string, error) {
	b.mu.Lock()
	e, ok := b.epochs[tenant]
	b.mu.Unlock()
	if ok {
		return e, nil
	}
	st, err := b.State(ctx, tenant)
	if err != nil {
		return "", err
	}
	return st.Epoch, nil
}

// StreamState is a snapshot of a tenant stream's bounds.
type StreamState struct {
	Epoch    string
	FirstSeq uint64
	LastSeq  uint64
}

// State returns the tenant stream's epoch and sequence bounds.
func (b *Backbone) State(ctx context.Context, tenant string) (StreamState, error) {
	if !ValidTenant(tenant) {
		return StreamState{}, ErrBadTenant
	}
	s, err := b.js.Stream(ctx, StreamName(tenant))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return StreamState{}, ErrNoStream
	}
	if err != nil {
		return StreamState{}, unavailable(err)
	}
	info := s.CachedInfo()
	return StreamState{Epoch: b.remember(tenant, info), FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq}, nil
}

// PublishOptions refine one publish.
type PublishOptions struct {
	// MsgID, when set, makes JetStream drop a second publish with the same id
	// inside its duplicate window (used for QoS 2 and client retries).
	MsgID string
	// TraceParent is the W3C trace context to carry.
	TraceParent string
	// Protocol names the ingress protocol (telemetry.ProtocolMQTT, ...)
	// for the edge's metrics and spans; it is not stored.
	Protocol string
}

// prepare makes sure m's tenant has a stream and builds the NATS message
// and publish options for m.
func (b *Backbone) prepare(ctx context.Context, m *message.Message, opts PublishOptions) (string, *nats.Msg, []jetstream.PublishOpt, error) {
	epoch, err := b.EnsureTenant(ctx, m.Tenant)
	if err != nil {
		return "", nil, nil, err
	}
	msg := encode(topic.ToSubject(b.cfg.InSubject(m.Tenant), m.Topic), m)
	if opts.TraceParent != "" {
		msg.Header.Set(HeaderTraceParent, opts.TraceParent)
	}
	popts := []jetstream.PublishOpt{jetstream.WithExpectStream(StreamName(m.Tenant))}
	if opts.MsgID != "" {
		popts = append(popts, jetstream.WithMsgID(opts.MsgID))
	}
	return epoch, msg, popts, nil
}

// Publish stores m in its tenant's stream and returns its position once
// JetStream acknowledged the store: a nil error means the message is durable
// (to the stream's replication factor). m.Seq and m.Time are not modified.
func (b *Backbone) Publish(ctx context.Context, m *message.Message, opts PublishOptions) (message.Position, error) {
	epoch, msg, popts, err := b.prepare(ctx, m, opts)
	if err != nil {
		return message.Position{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.cfg.PublishTimeout)
		defer cancel()
	}
	op := b.tel.StartStore(ctx, m.Tenant)
	ack, err := b.js.PublishMsg(ctx, msg, popts...)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) {
		// The stream vanished (deleted tenant or a recreated backbone):
		// recreate it once, under a new epoch.
		b.Forget(m.Tenant)
		if epoch, err = b.EnsureTenant(ctx, m.Tenant); err == nil {
			ack, err = b.js.PublishMsg(ctx, msg, popts...)
		}
	}
	b.tel.EndStore(op, err)
	if err != nil {
		return message.Position{}, fmt.Errorf("%w: %w", ErrNotStored, err)
	}
	return message.Position{Epoch: epoch, Seq: ack.Sequence}, nil
}

// Pending is a publish sent to the backbone whose store is not yet
// confirmed, or a settled one (Settled).
type Pending struct {
	fut   jetstream.PubAckFuture // nil once settled
	tel   *telemetry.Backbone
	op    telemetry.StoreOp
	epoch string
	// The outcome of a settled publish.
	pos message.Position
	err error
}

// Settled returns a Pending whose outcome is known already: the position
// pos, or the error err. Backbones that store synchronously (the in-memory
// one, Memory) answer PublishAsync with one.
func Settled(pos message.Position, err error) *Pending { return &Pending{pos: pos, err: err} }

// Wait returns the message's position once the backbone stored it; an
// error means it must be treated as not accepted. A nil Pending (a publish
// sent without asking for an acknowledgement) waits for nothing.
func (p *Pending) Wait(ctx context.Context) (message.Position, error) {
	if p == nil {
		return message.Position{}, nil
	}
	if p.fut == nil {
		return p.pos, p.err
	}
	select {
	case ack := <-p.fut.Ok():
		p.tel.EndStore(p.op, nil)
		return message.Position{Epoch: p.epoch, Seq: ack.Sequence}, nil
	case err := <-p.fut.Err():
		p.tel.EndStore(p.op, err)
		return message.Position{}, fmt.Errorf("%w: %w", ErrNotStored, err)
	case <-ctx.Done():
		return message.Position{}, fmt.Errorf("%w: %w", ErrNotStored, ctx.Err())
	}
}

// PublishAsync sends m to its tenant's stream without waiting for the store.
// Publishes sent from one goroutine are stored in the order they were sent,
// so a connection can pipeline its publishes and keep their order; Wait on
// the result gives the durable position. At most MaxPendingPublishes may be
// unconfirmed per backbone; beyond that PublishAsync waits for room.
func (b *Backbone) PublishAsync(ctx context.Context, m *message.Message, opts PublishOptions) (*Pending, error) {
	epoch, msg, popts, err := b.prepare(ctx, m, opts)
	if err != nil {
		return nil, err
	}
	op := b.tel.StartStore(ctx, m.Tenant)
	fut, err := b.js.PublishMsgAsync(msg, popts...)
	if err != nil {
		b.tel.EndStore(op, err)
		return nil, fmt.Errorf("%w: %w", ErrNotStored, err)
	}
	return &Pending{fut: fut, epoch: epoch, tel: b.tel, op: op}, nil
}

// Send hands m to its tenant's stream without asking for an
// acknowledgement: the message goes out with no reply subject, which
// JetStream stores all the same and answers nothing. It is the publish of
// at-most-once messages (MQTT QoS 0), which then cost no acknowledgement
// round trip, no reply subscription entry and no waiting goroutine. A nil
// error means the message is in the NATS connection's outgoing buffer,
// nothing more: a message JetStream cannot store (its stream deleted) is
// lost without notice. Send waits while too many of its messages are not
// known to be taken in (sendWindow), so that an overload slows its
// callers rather than overflowing JetStream's ingest queue. Messages sent
// from one goroutine by Send and PublishAsync are stored in the order sent
// (they share the connection). opts.MsgID still deduplicates.
func (b *Backbone) Send(ctx context.Context, m *message.Message, opts PublishOptions) error {
	if _, err := b.EnsureTenant(ctx, m.Tenant); err != nil {
		return err
	}
	msg := encode(topic.ToSubject(b.cfg.InSubject(m.Tenant), m.Topic), m)
	if opts.TraceParent != "" {
		msg.Header.Set(HeaderTraceParent, opts.TraceParent)
	}
	if opts.MsgID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, opts.MsgID)
	}
	w := &b.sends
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := b.makeRoomLocked(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrNotStored, err)
	}
	if w.since++; w.since < sendMark {
		if err := b.nc.PublishMsg(msg); err != nil {
			return fmt.Errorf("%w: %w", ErrNotStored, err)
		}
		return nil
	}
	w.since = 0
	fut, err := b.js.PublishMsgAsync(msg, jetstream.WithExpectStream(StreamName(m.Tenant)))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotStored, err)
	}
	w.marks = append(w.marks, fut)
	return nil
}

// makeRoomLocked drops the marks JetStream answered and, while the
// messages not known to be taken in are more than the window, waits for
// the oldest mark (at most PublishTimeout each: a mark whose answer is
// lost does not stop Send for good).
func (b *Backbone) makeRoomLocked(ctx context.Context) error {
	w := &b.sends
	for len(w.marks) > 0 {
		fut := w.marks[0]
		if len(w.marks)*sendMark < b.cfg.MaxPendingPublishes {
			select {
			case <-fut.Ok():
			case <-fut.Err():
			default:
				return nil
			}
		} else {
			t := time.NewTimer(b.cfg.PublishTimeout)
			select {
			case <-fut.Ok():
			case <-fut.Err():
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			t.Stop()
		}
		w.marks[0] = nil
		w.marks = w.marks[1:]
	}
	return nil
}

// Tenants lists the tenants that have a stream.
func (b *Backbone) Tenants(ctx context.Context) ([]string, error) {
	names := b.js.StreamNames(ctx, jetstream.WithStreamListSubject(b.cfg.SubjectPrefix+".in.>"))
	var out []string
	for n := range names.Name() {
		if t, ok := cutStreamName(n); ok {
			out = append(out, t)
		}
	}
	return out, unavailable(names.Err())
}

func cutStreamName(name string) (string, bool) {
	const p = "HERALD_"
	if len(name) <= len(p) || name[:len(p)] != p {
		return "", false
	}
	return name[len(p):], true
}

// Range calls fn, in stream order, for each stored message of tenant with a
// sequence in (after, upto] whose subject matches one of the topic filters.
// upto 0 means "up to the last message stored when Range started". It stops
// at the first error fn returns.
func (b *Backbone) Range(ctx context.Context, tenant string, filters []string, after, upto uint64, fn func(*message.Message) error) error {
	if !ValidTenant(tenant) {
		return ErrBadTenant
	}
	stream, err := b.js.Stream(ctx, StreamName(tenant))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return ErrNoStream
	}
	if err != nil {
		return unavailable(err)
	}
	info := stream.CachedInfo()
	b.remember(tenant, info)
	last := info.State.LastSeq
	if upto == 0 || upto > last {
		upto = last
	}
	if upto <= after {
		return nil
	}
	// The stream's last message marks the end of the read. On a NATS
	// cluster the consumer below may be led by a replica that has not yet
	// stored what the stream's leader acknowledged (a quorum is two of
	// three): its count of what is pending, and an empty answer, can be
	// short of the truth, and a read that trusted them missed the newest
	// messages (reliability.md, finding 9). So the consumer's filters also
	// take the last message's own subject, and the read ends only once a
	// message at or past upto arrived; what that subject adds beyond the
	// topic filters is skipped here.
	lastMsg, err := stream.GetMsg(ctx, last)
	if err != nil {
		return unavailable(err)
	}
	subjects := []string{lastMsg.Subject}
	for _, f := range filters {
		subjects = append(subjects, topic.FilterSubjects(b.cfg.InSubject(tenant), f)...)
	}
	cons, err := b.js.CreateConsumer(ctx, StreamName(tenant), jetstream.ConsumerConfig{
		FilterSubjects: consumerSubjects(b.cfg.InSubject(tenant)+".>", subjects),
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    after + 1,
		AckPolicy:      jetstream.AckNonePolicy,
		MemoryStorage:  true,
		// A backstop only: the consumer is deleted when Range returns.
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return unavailable(err)
	}
	// Delete the consumer at once: a stream allows a bounded number of
	// consumers (1,000 by default), and resumes may be many per second.
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.PublishTimeout)
		defer cancel()
		_ = b.js.DeleteConsumer(dctx, StreamName(tenant), cons.CachedInfo().Name)
	}()
	for {
		// The batch yields messages as they arrive, and the read ends on
		// the message at upto, so the wait is spent only when the server
		// does not deliver what it stored.
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(b.cfg.PublishTimeout))
		if err != nil {
			return unavailable(err)
		}
		n := 0
		for jm := range batch.Messages() {
			n++
			md, err := jm.Metadata()
			if err != nil {
				return unavailable(err)
			}
			if md.Sequence.Stream > upto {
				return nil
			}
			// A message that is not of a Herald subject is skipped, never
			// failing a reader.
			if m, err := b.decodeStored(tenant, jm.Subject(), jm.Headers(), jm.Data(), md.Sequence.Stream, md.Timestamp); err == nil && anyMatch(filters, m.Topic) {
				if err := fn(m); err != nil {
					return err
				}
			}
			if md.Sequence.Stream == upto {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			return unavailable(err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: reading %s up to %d: nothing delivered within %s",
				ErrIncompleteRead, StreamName(tenant), upto, b.cfg.PublishTimeout)
		}
	}
}

// DecodeStored turns a message read from a tenant stream back into a Message.
func (b *Backbone) DecodeStored(tenant string, jm jetstream.Msg) (*message.Message, error) {
	md, err := jm.Metadata()
	if err != nil {
		return nil, err
	}
	return b.decodeStored(tenant, jm.Subject(), jm.Headers(), jm.Data(), md.Sequence.Stream, md.Timestamp)
}

func (b *Backbone) decodeStored(tenant, subject string, h nats.Header, data []byte, seq uint64, ts time.Time) (*message.Message, error) {
	t, name, err := splitSubject(b.cfg.SubjectPrefix+".in", subject)
	if err != nil {
		return nil, err
	}
	if t != tenant {
		return nil, ErrBadTenant
	}
	m := &message.Message{Tenant: tenant, Topic: name, Payload: data, Seq: seq, Time: ts}
	decodeHeaders(m, h)
	return m, nil
}

func anyMatch(filters []string, name string) bool {
	for _, f := range filters {
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}

func dedupeStrings(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// parseSeq reads a numeric NATS header.
func parseSeq(v string) uint64 {
	n, _ := strconv.ParseUint(v, 10, 64)
	return n
}
