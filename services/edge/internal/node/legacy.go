package node

import (
	"context"
	"sync"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
)

// legacy lets the MQTT server keep building and reading a Node through its
// exported fields while it has not moved onto Publish and the Feed: a Node
// made as a struct literal adopts those fields at its first use by a
// method the MQTT server calls. It goes with the exported fields.
type legacy struct {
	once sync.Once
}

func (n *Node) adoptLegacy() {
	n.legacy.once.Do(func() {
		if n.id == "" {
			n.id = n.ID
		}
		if n.stream == nil && n.Backbone != nil {
			n.stream = n.Backbone
		}
		if n.hub == nil {
			n.hub = n.Hub
		}
		if n.state == nil {
			n.state = n.State
		}
		if n.auth == nil {
			n.auth = n.Auth
		}
		if n.log == nil {
			n.log = n.Log
		}
		if n.limits == (topic.Limits{}) {
			n.limits = n.Limits
		}
		if n.tel == nil {
			n.tel = n.Telemetry
		}
	})
}

// Replay emits, in order, every stored message of tenant after position
// from that matches one of the filters: the MQTT server's resume, until it
// resumes through a Feed (see Sub.Replay, which every other transport
// uses).
func (n *Node) Replay(ctx context.Context, tenant string, filters []string, from message.Position,
	emit func(*message.Message) error, gap func(epochChanged bool) error) (Replayed, error) {
	n.adoptLegacy()
	return n.replay(ctx, tenant, filters, from, func(m *message.Message, _ string) error { return emit(m) }, gap)
}
