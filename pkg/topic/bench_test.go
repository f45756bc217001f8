package topic_test

import (
	"testing"

	"github.com/heraldmq/herald/pkg/topic"
)

// The per-message topic work of the hot path: validating a published
// name, mapping it to its subject and back, and matching a filter.

func BenchmarkValidateName(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if topic.ValidateName("sensors/kitchen/temp", topic.Limits{}) != nil {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkToSubject(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = topic.ToSubject("herald.in.dev", "sensors/kitchen/temp")
	}
}

func BenchmarkFromSubject(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := topic.FromSubject("sensors.kitchen.temp"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	for _, f := range []string{"sensors/kitchen/temp", "sensors/+/temp", "sensors/#", "other/#"} {
		b.Run(f, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = topic.Match(f, "sensors/kitchen/temp")
			}
		})
	}
}
