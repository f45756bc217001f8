package telemetry

import "sync"

// OtherTenant is the label value shared by the tenants past the limit.
const OtherTenant = "_other"

// TenantLabels bounds the cardinality of the tenant label: the first Limit
// distinct tenants seen keep their own value for the life of the process,
// every later one is labelled OtherTenant. A tenant's value never changes
// once given, so its series stay continuous. Safe for concurrent use; the
// common case (a tenant already seen) takes a read lock only.
type TenantLabels struct {
	limit int
	mu    sync.RWMutex
	own   map[string]struct{}
}

// NewTenantLabels returns labels for at most limit tenants (0: every tenant
// is OtherTenant).
func NewTenantLabels(limit int) *TenantLabels {
	return &TenantLabels{limit: max(limit, 0), own: make(map[string]struct{})}
}

// Label returns the label value of tenant.
func (t *TenantLabels) Label(tenant string) string {
	t.mu.RLock()
	_, ok := t.own[tenant]
	full := len(t.own) >= t.limit
	t.mu.RUnlock()
	if ok {
		return tenant
	}
	if full {
		return OtherTenant
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.own[tenant]; ok {
		return tenant
	}
	if len(t.own) >= t.limit {
		return OtherTenant
	}
	t.own[tenant] = struct{}{}
	return tenant
}

// Len returns how many tenants have a label of their own.
func (t *TenantLabels) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.own)
}
