package tenant

import "context"

// WatchFrom is Watch resuming after revision from, as after a disconnect,
// instead of starting with a reload.
func (s *Etcd) WatchFrom(ctx context.Context, from int64) <-chan Event {
	out := make(chan Event)
	go s.watchTenants(ctx, out, from)
	return out
}

// SetResetPageSize makes reloads read n tenants at a time until the test ends.
func SetResetPageSize(tb interface{ Cleanup(func()) }, n int64) {
	old := resetPageSize
	resetPageSize = n
	tb.Cleanup(func() { resetPageSize = old })
}
