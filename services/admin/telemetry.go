package admin

import "github.com/heraldmq/herald/pkg/telemetry"

// WithTelemetry records every admin API request's latency, by gRPC method
// or REST verb and result (herald.admin.request.duration).
func WithTelemetry(p telemetry.Providers) Option {
	return func(s *Server) { s.telemetry = &p }
}
