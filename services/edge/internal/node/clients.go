package node

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/services/edge/internal/auth"
)

// ClientInfo describes one live connection, for listing and kicking.
type ClientInfo struct {
	// ID names the connection on this edge (the MQTT client id, or the
	// transport's own id for SSE and WebSocket); unique per tenant on an
	// edge is enough, Kick closes every match.
	ID string
	// Protocol is "mqtt", "sse", "ws", "http".
	Protocol string
	// Remote is the client's address.
	Remote   string
	Identity auth.Identity
	// Since is when the connection was registered (set by Register).
	Since time.Time
	// Subscriptions are the filters the connection holds, filled by List.
	Subscriptions []string

	// subscriptions reads them: the admission's feeds (set by Admit).
	subscriptions func() []string
}

// ClientsConfig configures Clients.
type ClientsConfig struct {
	// Check, if set, reports whether an identity still holds: nil if its
	// credential and tenant still exist with the same capabilities, else an
	// error wrapping auth.ErrRevoked. Clients calls it on Register (so that
	// a credential revoked between Authenticate and Register cannot slip
	// through) and when the credential changes. tenantauth.Authenticator's
	// Check is the implementation; without one, only deletions close
	// connections.
	Check func(auth.Identity) error
	// Now returns the time; default time.Now.
	Now func() time.Time
}

// Clients is the registry of an edge's live connections, by tenant and by
// credential, so that a revoked key, a deleted tenant or an operator's kick
// closes the connections concerned. Transports Register on connect and
// Unregister on close; the edge wires OnChange to its tenant.Directory.
//
// Guarantees: a connection registered successfully is closed (its close
// callback runs) once its credential or tenant is deleted, its credential's
// capabilities change, or its credential expires; the callback runs at
// most once, never under Clients' lock, and from the goroutine delivering
// the change (the Directory's), so it must not block: queue the DISCONNECT
// or close frame and return. Safe for concurrent use.
type Clients struct {
	check func(auth.Identity) error
	now   func() time.Time

	mu       sync.Mutex
	byTenant map[string]map[*Client]struct{}
	byCred   map[credKey]map[*Client]struct{}
}

type credKey struct{ tenant, credential string }

// Client is one registered connection.
type Client struct {
	r     *Clients
	info  ClientInfo
	close func(reason error)
	timer *time.Timer // at the credential's expiry; nil if none
	done  bool        // closed or unregistered; guarded by r.mu
}

// NewClients returns an empty registry.
func NewClients(cfg ClientsConfig) *Clients {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Clients{check: cfg.Check, now: cfg.Now, byTenant: map[string]map[*Client]struct{}{}, byCred: map[credKey]map[*Client]struct{}{}}
}

// Register adds a live connection. close is called at most once, with a
// reason wrapping auth.ErrRevoked (or the reason given to Kick), when the
// connection must end; the transport maps it (MQTT 5 DISCONNECT 0x87,
// WebSocket close 1008, SSE end of stream) and then calls Unregister as on
// any close. Register fails with the Check error if the identity no longer
// holds, or wrapping auth.ErrRevoked if it has expired.
func (r *Clients) Register(info ClientInfo, close func(reason error)) (*Client, error) {
	id := info.Identity
	now := r.now()
	if !id.Expires.IsZero() && !now.Before(id.Expires) {
		return nil, fmt.Errorf("%w: credential expired", auth.ErrRevoked)
	}
	info.Since = now
	c := &Client{r: r, info: info, close: close}
	r.mu.Lock()
	// Checked under the lock: a deletion applied to the Directory before
	// this point fails the check; one applied after it finds c registered.
	if r.check != nil {
		if err := r.check(id); err != nil {
			r.mu.Unlock()
			return nil, err
		}
	}
	add(r.byTenant, id.Tenant, c)
	if id.Credential != "" {
		add(r.byCred, credKey{id.Tenant, id.Credential}, c)
	}
	if !id.Expires.IsZero() {
		c.timer = time.AfterFunc(id.Expires.Sub(now), func() {
			r.closeAll([]*Client{c}, fmt.Errorf("%w: credential expired", auth.ErrRevoked))
		})
	}
	r.mu.Unlock()
	return c, nil
}

// Unregister removes the connection; its close callback will not be
// called from now on. Idempotent.
func (c *Client) Unregister() {
	r := c.r
	r.mu.Lock()
	r.remove(c)
	r.mu.Unlock()
}

// Info returns what the connection was registered with.
func (c *Client) Info() ClientInfo { return c.info }

// remove drops c from the indexes; r.mu held. It reports whether c was
// still registered.
func (r *Clients) remove(c *Client) bool {
	if c.done {
		return false
	}
	c.done = true
	if c.timer != nil {
		c.timer.Stop()
	}
	id := c.info.Identity
	del(r.byTenant, id.Tenant, c)
	if id.Credential != "" {
		del(r.byCred, credKey{id.Tenant, id.Credential}, c)
	}
	return true
}

// closeAll unregisters cs and calls their close callbacks with reason,
// outside the lock. It returns how many it closed.
func (r *Clients) closeAll(cs []*Client, reason error) int {
	r.mu.Lock()
	victims := cs[:0:0]
	for _, c := range cs {
		if r.remove(c) {
			victims = append(victims, c)
		}
	}
	r.mu.Unlock()
	for _, c := range victims {
		c.close(reason)
	}
	return len(victims)
}

// OnChange applies one Directory change: a deleted tenant closes all its
// connections, a deleted credential those that used it, a changed one
// those the Check no longer admits. Wire it as (or into)
// tenant.DirectoryConfig.OnChange.
func (r *Clients) OnChange(ch tenant.Change) {
	var prefix string
	switch ch.Kind {
	case tenant.KindTenant:
		if ch.Deleted {
			r.closeAll(r.snapshot(r.byTenant[ch.Tenant]), fmt.Errorf("%w: tenant %s deleted", auth.ErrRevoked, ch.Tenant))
		}
		return
	case tenant.KindAPIKey:
		prefix = auth.CredentialAPIKey
	case tenant.KindJWTKey:
		prefix = auth.CredentialJWTKey
	case tenant.KindMTLSIdentity:
		prefix = auth.CredentialMTLS
	default:
		return
	}
	cs := r.snapshot(r.byCred[credKey{ch.Tenant, prefix + ch.ID}])
	if ch.Deleted {
		r.closeAll(cs, fmt.Errorf("%w: %s %s deleted", auth.ErrRevoked, ch.Kind, ch.ID))
		return
	}
	if r.check == nil {
		return
	}
	for _, c := range cs {
		if err := r.check(c.info.Identity); err != nil {
			r.closeAll([]*Client{c}, err)
		}
	}
}

// snapshot copies a set under the lock.
func (r *Clients) snapshot(set map[*Client]struct{}) []*Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Collect(maps.Keys(set))
}

// Kick closes the tenant's connections with the id, with reason, and
// returns how many there were.
func (r *Clients) Kick(tenantID, id string, reason error) int {
	var cs []*Client
	r.mu.Lock()
	for c := range r.byTenant[tenantID] {
		if c.info.ID == id {
			cs = append(cs, c)
		}
	}
	r.mu.Unlock()
	return r.closeAll(cs, reason)
}

// List returns the tenant's connections on this edge, oldest first, each
// with the filters it holds now.
func (r *Clients) List(tenantID string) []ClientInfo {
	r.mu.Lock()
	out := make([]ClientInfo, 0, len(r.byTenant[tenantID]))
	for c := range r.byTenant[tenantID] {
		out = append(out, c.info)
	}
	r.mu.Unlock()
	// Read outside the registry's lock: the feeds have locks of their own.
	for i := range out {
		if out[i].subscriptions != nil {
			out[i].Subscriptions = out[i].subscriptions()
		}
	}
	slices.SortFunc(out, func(a, b ClientInfo) int { return a.Since.Compare(b.Since) })
	return out
}

// Count returns the number of the tenant's connections on this edge.
func (r *Clients) Count(tenantID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byTenant[tenantID])
}

func add[K comparable](m map[K]map[*Client]struct{}, k K, c *Client) {
	set := m[k]
	if set == nil {
		set = map[*Client]struct{}{}
		m[k] = set
	}
	set[c] = struct{}{}
}

func del[K comparable](m map[K]map[*Client]struct{}, k K, c *Client) {
	if set := m[k]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}
