// Package tenant holds Herald's tenants: the isolated namespaces every topic,
// session and credential belongs to. They live in etcd; edges, session nodes
// and the admin API read them through a Source.
package tenant

import (
	"context"
	"regexp"
	"time"

	"github.com/heraldmq/herald/pkg/fault"
)

// Tenant is one tenant as stored (as JSON) in etcd.
type Tenant struct {
	// ID names the tenant; see ValidID. It is the etcd key's last element,
	// and never changes.
	ID string `json:"id"`
	// DisplayName is free text for people.
	DisplayName string `json:"display_name,omitempty"`
	// CreatedAt is when the tenant was first stored.
	CreatedAt time.Time `json:"created_at"`
	// Limits bound what the tenant's clients may use; the zero value
	// limits nothing.
	Limits Limits `json:"limits,omitzero"`
	// Revision is the store revision of the tenant's last change (etcd's
	// mod revision). It grows with every change, so it serves as a version
	// or etag; it is not part of the stored value.
	Revision int64 `json:"-"`
}

var (
	// ErrNotFound is returned when no tenant has the requested ID.
	ErrNotFound = fault.New(fault.NotFound, "tenant: not found")
	// ErrInvalidID is returned, without I/O, for an ID that ValidID rejects.
	ErrInvalidID = fault.New(fault.Invalid, "tenant: invalid id")
	// ErrInvalidPage is returned by List for a negative page size or a page
	// token the source did not issue.
	ErrInvalidPage = fault.New(fault.Invalid, "tenant: invalid page size or token")
	// ErrConflict is returned by a conditional write when the tenant has
	// changed since the revision the writer read.
	ErrConflict = fault.New(fault.Conflict, "tenant: revision conflict")
	// ErrAlreadyExists is returned when creating something whose ID is
	// taken.
	ErrAlreadyExists = fault.New(fault.AlreadyExists, "tenant: already exists")
	// ErrInvalid is returned, without I/O, for a value that cannot be
	// stored: a negative limit, a malformed credential.
	ErrInvalid = fault.New(fault.Invalid, "tenant: invalid value")
	// ErrIdentityTaken is returned when registering a credential identity
	// (an API key id, a JWT key id or issuer, a certificate fingerprint or
	// subject) that another record holds. The error names the identity,
	// never the tenant holding it.
	ErrIdentityTaken = fault.New(fault.AlreadyExists, "tenant: identity already registered")
	// ErrDeleting is returned when creating a tenant whose previous
	// incarnation is still being deleted (its data is being removed).
	ErrDeleting = fault.New(fault.Conflict, "tenant: still being deleted")
)

// idRE is backbone.ValidTenant's alphabet (a test keeps them equal): an ID
// becomes a NATS subject token, a stream name suffix and a Redis hash tag.
// It is repeated here so that readers of tenants need not link NATS.
var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidID reports whether id can name a tenant: 1 to 63 characters of
// [a-z0-9_-], the first a letter or digit.
func ValidID(id string) bool { return idRE.MatchString(id) }

// Page sizes of Source.List.
const (
	// DefaultPageSize is the page size List uses when asked for 0.
	DefaultPageSize = 100
	// MaxPageSize caps the page size List uses; larger requests get this.
	MaxPageSize = 1000
)

// Source reads tenants. Implementations are safe for concurrent use.
type Source interface {
	// Get returns the tenant with the given ID. It returns ErrInvalidID,
	// without I/O, if ValidID rejects id, and ErrNotFound if there is no
	// such tenant.
	Get(ctx context.Context, id string) (Tenant, error)

	// List returns up to pageSize tenants in ascending ID (byte) order,
	// starting after the page that returned pageToken ("" for the first),
	// and the token of the next page, which is "" exactly when this page is
	// the last. pageSize 0 means DefaultPageSize; above MaxPageSize it means
	// MaxPageSize. A negative pageSize or a token this source did not issue
	// gives ErrInvalidPage. Pages are read one at a time: a tenant that
	// exists throughout the listing appears exactly once, one created or
	// deleted meanwhile may or may not appear.
	List(ctx context.Context, pageSize int, pageToken string) (tenants []Tenant, next string, err error)

	// Watch follows every change to the tenants until ctx is done, then
	// closes the channel; its goroutine is gone by then.
	//
	// The first event is an EventReset holding every tenant. EventPut and
	// EventDelete events follow in revision order, each change after the
	// reset's revision exactly once. Whenever the source cannot continue
	// from where it was — its history was compacted, or it lost the store
	// — it reloads and sends another EventReset; consumers then replace
	// everything they hold, and changes in between are seen only folded
	// into it. Revisions never go backwards, across resets too.
	//
	// Events are not dropped: a consumer that does not receive holds the
	// watch back. While the store is unreachable the channel stays open
	// and quiet and the source keeps retrying.
	Watch(ctx context.Context) <-chan Event
}

// EventType says what an Event reports.
type EventType uint8

// Event types.
const (
	// EventReset carries the whole set of tenants, in Tenants.
	EventReset EventType = iota + 1
	// EventPut reports a tenant created or changed, in Tenant.
	EventPut
	// EventDelete reports a tenant deleted; only Tenant.ID is set.
	EventDelete
)

// String returns the name of t.
func (t EventType) String() string {
	switch t {
	case EventReset:
		return "reset"
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return "unknown"
}

// Event is one change seen by Source.Watch.
type Event struct {
	Type EventType
	// Revision is the store revision of the change, or for EventReset the
	// revision the set was read at.
	Revision int64
	// Tenant is the tenant put (EventPut) or deleted (EventDelete).
	Tenant Tenant
	// Tenants is every tenant, in ascending ID order (EventReset only).
	Tenants []Tenant
}
