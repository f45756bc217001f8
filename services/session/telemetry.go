package session

import (
	"context"
	"time"

	"github.com/heraldmq/herald/pkg/telemetry"
)

// countSessionsTimeout bounds the store calls one metrics collection makes
// to count the owned tenants' sessions.
const countSessionsTimeout = 2 * time.Second

// instrument creates the service's instruments over cfg.Telemetry.
func (s *Service) instrument() *telemetry.Session {
	return telemetry.NewSession(s.cfg.Telemetry, func(ctx context.Context) telemetry.SessionStats {
		st := s.Stats()
		owned := s.Owned()
		out := telemetry.SessionStats{TenantsOwned: len(owned), RetainedDropped: st.RetainedDropped,
			StoreLosses: st.StoreLosses, WillsPublished: st.WillsPublished, Sessions: make(map[string]int, len(owned))}
		ctx, cancel := context.WithTimeout(ctx, countSessionsTimeout)
		defer cancel()
		for _, t := range owned {
			n, err := s.st.CountSessions(ctx, t)
			if err != nil {
				break // the store is slow or away: report what was counted
			}
			out.Sessions[t] = n
		}
		return out
	})
}
