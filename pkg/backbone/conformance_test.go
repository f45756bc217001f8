package backbone_test

import (
	"testing"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/backbone/backbonetest"
	"github.com/heraldmq/herald/pkg/message"
)

// TestJetStreamConformance ensures the JetStream backbone passes the
// conformance suite of the backbone's interfaces.
func TestJetStreamConformance(t *testing.T) {
	backbonetest.Run(t, func(t *testing.T) backbonetest.Backbone {
		b := newBackbone(t)
		return backbonetest.Backbone{
			Streams: b,
			NewLive: func(h func(*message.Message)) backbonetest.Interest {
				return b.NewLive(backbone.LiveConfig{}, h)
			},
			Control: b.Control(),
			Bucket:  func(cfg backbone.BucketConfig) backbonetest.Bucket { return b.Bucket(cfg) },
		}
	})
}

// TestMemoryConformance ensures the in-memory backbone that pure-logic
// tests use passes the same suite.
func TestMemoryConformance(t *testing.T) {
	backbonetest.Run(t, func(t *testing.T) backbonetest.Backbone {
		m := backbone.NewMemory()
		return backbonetest.Backbone{
			Streams: m,
			NewLive: func(h func(*message.Message)) backbonetest.Interest { return m.NewLive(h) },
			Control: m.Control(),
			Bucket:  func(cfg backbone.BucketConfig) backbonetest.Bucket { return m.Bucket(cfg) },
		}
	})
}
