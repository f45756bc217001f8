package node

import (
	"context"
	"errors"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
)

const replayPage = 512

// replay emits, in order, every stored message of tenant after position
// from that matches one of the filters and has not expired, with the
// stream's epoch.
//
// It is the gap-free half of a resume (Sub.Replay): live interest is taken
// first (hub.Subscribe returns once it is in effect), live deliveries are
// buffered, replay runs, then live messages with Seq > Replayed.Last pass. Messages
// stored before the live interest took effect have Seq <= Last and come from
// here; later ones come live. Replay reads the session service's replay
// buffer and fills from the JetStream stream whatever the buffer does not
// hold yet (the session service lags the stream slightly) or no longer
// holds (trimmed), so the answer does not depend on that lag.
//
// When messages after from may be missing, gap is called at the point of the
// hole: before any message that follows it is emitted.
func (n *Node) replay(ctx context.Context, tenant string, filters []string, from message.Position,
	emit func(m *message.Message, epoch string) error, gap func(epochChanged bool) error) (Replayed, error) {
	st, err := n.stream.State(ctx, tenant)
	if errors.Is(err, backbone.ErrNoStream) {
		// Nothing was ever published: everything will come live.
		return Replayed{}, nil
	}
	if err != nil {
		return Replayed{}, err
	}
	res := Replayed{Epoch: st.Epoch, Last: st.LastSeq}
	after := from.Seq
	if from.Epoch != "" && from.Epoch != st.Epoch {
		res.Gap, res.EpochChanged = true, true
		return res, gap(true)
	}
	if after >= st.LastSeq {
		return res, nil
	}
	now := time.Now()
	emitted := after
	send := func(m *message.Message) error {
		if m.Seq <= emitted || m.Seq > st.LastSeq {
			return nil
		}
		emitted = m.Seq
		if m.Expired(now) || !matchAny(filters, m.Topic) {
			return nil
		}
		return emit(m, st.Epoch)
	}

	// The replay buffer first, while it covers the position in this epoch.
	// Every page is checked, not only the first: the session service trims
	// the buffer while a long replay pages through it, and a page that
	// starts past where the previous one ended would skip the trimmed
	// messages. The stream fills from wherever the buffer stopped covering.
	if n.state != nil {
		from := after
		for {
			page, err := n.state.Replay(ctx, tenant, from, replayPage)
			if err != nil {
				n.log.Warn("replay buffer unavailable, reading the stream", "tenant", tenant, "err", err)
				break
			}
			if page.Epoch != st.Epoch || page.TrimmedThrough > from {
				break
			}
			for _, m := range page.Messages {
				if err := send(m); err != nil {
					return res, err
				}
			}
			if len(page.Messages) < replayPage || emitted >= st.LastSeq {
				// The buffer is complete up to what the session service
				// applied when this page was read.
				if page.Applied > emitted {
					emitted = min(page.Applied, st.LastSeq)
				}
				break
			}
			from = emitted
		}
	}
	if emitted >= st.LastSeq {
		return res, nil
	}
	// The rest from the stream, the source of truth.
	if st.FirstSeq > emitted+1 {
		res.Gap = true
		if err := gap(false); err != nil {
			return res, err
		}
		emitted = st.FirstSeq - 1
	}
	err = n.stream.Range(ctx, tenant, filters, emitted, st.LastSeq, send)
	return res, err
}

func matchAny(filters []string, name string) bool {
	for _, f := range filters {
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}
