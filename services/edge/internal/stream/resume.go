package stream

import (
	"context"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// Gap tells a client that messages after its position may be missing.
type Gap struct {
	// From is the position the client resumed from.
	From message.Position
	// EpochChanged is set when From belongs to a previous stream.
	EpochChanged bool
}

// Resume is the replay half of a resume for s, which must be paused and
// already registered with the hub for filters (so every message stored
// after that is buffered by s). It replays the stored messages after from
// through emit, each with the epoch its position belongs to, then makes s
// live: the owner's queue yields the rest, without duplicates. A nil from
// means live only: nothing is replayed.
//
// When messages may be missing, gap is called at the hole, before the
// replayed messages that follow it. The returned epoch is the stream's
// current one.
func Resume(ctx context.Context, n *node.Node, tenant string, filters []string, from *message.Position,
	s *Subscriber, gap func(Gap) error, emit func(m *message.Message, epoch string) error) (epoch string, err error) {
	if from == nil {
		epoch, err = n.Backbone.EnsureTenant(ctx, tenant)
		if err != nil {
			return "", err
		}
		s.Live(0)
		return epoch, nil
	}
	// Every position handed out must carry its epoch: create the stream
	// now if nothing was ever published.
	if epoch, err = n.Backbone.EnsureTenant(ctx, tenant); err != nil {
		return "", err
	}
	res, err := n.Replay(ctx, tenant, filters, *from,
		func(m *message.Message) error { return emit(m, epoch) },
		func(changed bool) error { return gap(Gap{From: *from, EpochChanged: changed}) })
	if err != nil {
		return "", err
	}
	if res.Epoch != "" {
		epoch = res.Epoch
	}
	s.Live(res.Last)
	return epoch, nil
}
