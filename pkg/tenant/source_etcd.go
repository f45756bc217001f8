package tenant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdConfig configures an Etcd source.
type EtcdConfig struct {
	// Prefix roots every Herald key in etcd; default "/herald/". Tenants
	// live at Prefix + "tenants/" + ID, as JSON.
	Prefix string
}

// DefaultPrefix is the default EtcdConfig.Prefix.
const DefaultPrefix = "/herald/"

// Validate reports a configuration error.
func (c EtcdConfig) Validate() error {
	if c.Prefix != "" && !strings.HasSuffix(c.Prefix, "/") {
		return fmt.Errorf("tenant: etcd prefix %q must end with /", c.Prefix)
	}
	return nil
}

// Etcd is the Source backed by etcd; it also writes tenants (Put, Delete)
// for the admin API and for seeding.
type Etcd struct {
	cli    *clientv3.Client
	prefix string // EtcdConfig.Prefix
	dir    string // prefix + "tenants/"
	log    *slog.Logger
}

// NewEtcd returns a source reading and writing tenants through cli, which
// the caller keeps owning. A nil log discards.
func NewEtcd(cli *clientv3.Client, cfg EtcdConfig, log *slog.Logger) (*Etcd, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Etcd{cli: cli, prefix: cfg.Prefix, dir: cfg.Prefix + dirTenants, log: log}, nil
}

// Key returns the etcd key of the tenant id.
func (s *Etcd) Key(id string) string { return s.dir + id }

// Get implements Source.
func (s *Etcd) Get(ctx context.Context, id string) (Tenant, error) {
	if !ValidID(id) {
		return Tenant{}, fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	resp, err := s.cli.Get(ctx, s.Key(id))
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant: get %s: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return Tenant{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return s.decode(resp.Kvs[0].Key, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

// List implements Source. The page token is the last ID of the page,
// base64url-encoded.
func (s *Etcd) List(ctx context.Context, pageSize int, pageToken string) ([]Tenant, string, error) {
	kvs, next, err := s.listKVs(ctx, s.dir, pageSize, pageToken, ValidID)
	if err != nil {
		return nil, "", err
	}
	return s.decodeAll(kvs), next, nil
}

// Create stores a new tenant, setting CreatedAt to now if it is zero:
// ErrAlreadyExists if the ID is taken, ErrDeleting while a tenant of that
// ID is still being deleted, ErrInvalid for negative limits.
func (s *Etcd) Create(ctx context.Context, t Tenant) (Tenant, error) {
	if !ValidID(t.ID) {
		return Tenant{}, fmt.Errorf("%w: %q", ErrInvalidID, t.ID)
	}
	if err := t.Limits.Validate(); err != nil {
		return Tenant{}, err
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now()
	}
	value, err := json.Marshal(t)
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant: create %s: %w", t.ID, err)
	}
	key, mark := s.Key(t.ID), s.deletingKey(t.ID)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0), clientv3.Compare(clientv3.CreateRevision(mark), "=", 0)).
		Then(clientv3.OpPut(key, string(value))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant: create %s: %w", t.ID, err)
	}
	if !resp.Succeeded {
		if len(resp.Responses[0].GetResponseRange().Kvs) > 0 {
			return Tenant{}, fmt.Errorf("%w: tenant %s", ErrAlreadyExists, t.ID)
		}
		return Tenant{}, fmt.Errorf("%w: %s: create it again once its deletion finished", ErrDeleting, t.ID)
	}
	t.Revision = resp.Header.Revision
	return t, nil
}

// Put stores t, setting CreatedAt to now if it is zero, and returns it with
// its new Revision. With t.Revision 0 it creates or replaces, unless a
// tenant of that ID is being deleted (ErrDeleting); otherwise only if the
// stored tenant is still at that revision, else ErrConflict (also when it
// no longer exists).
func (s *Etcd) Put(ctx context.Context, t Tenant) (Tenant, error) {
	if !ValidID(t.ID) {
		return Tenant{}, fmt.Errorf("%w: %q", ErrInvalidID, t.ID)
	}
	if err := t.Limits.Validate(); err != nil {
		return Tenant{}, err
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now()
	}
	value, err := json.Marshal(t)
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant: put %s: %w", t.ID, err)
	}
	key := s.Key(t.ID)
	if t.Revision == 0 {
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(s.deletingKey(t.ID)), "=", 0)).
			Then(clientv3.OpPut(key, string(value))).Commit()
		if err != nil {
			return Tenant{}, fmt.Errorf("tenant: put %s: %w", t.ID, err)
		}
		if !resp.Succeeded {
			return Tenant{}, fmt.Errorf("%w: %s", ErrDeleting, t.ID)
		}
		t.Revision = resp.Header.Revision
		return t, nil
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", t.Revision)).
		Then(clientv3.OpPut(key, string(value))).
		Commit()
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant: put %s: %w", t.ID, err)
	}
	if !resp.Succeeded {
		return Tenant{}, fmt.Errorf("%w: %s is no longer at revision %d", ErrConflict, t.ID, t.Revision)
	}
	t.Revision = resp.Header.Revision
	return t, nil
}

// Delete removes the tenant id and everything that belongs to it; ErrNotFound
// if there is none. It is DeleteAt with revision 0.
func (s *Etcd) Delete(ctx context.Context, id string) error { return s.DeleteAt(ctx, id, 0) }

// DeleteAt removes the tenant id, if rev is not 0 only while it is still at
// that revision (else ErrConflict), together with its API keys, JWT keys,
// certificate identities and admin keys, in one transaction: a Directory
// sees them go at one revision. The same transaction marks the tenant as
// being deleted: its data (stream, retained messages, replay buffer,
// sessions, counters) is the data plane's to remove, and until
// FinishDelete says that is done, the ID cannot be created again
// (ErrDeleting). A tenant already being deleted is ErrNotFound, like one
// that never existed (IsDeleting tells them apart). The identities its
// credentials held are free for others to register at once (their owner
// keys are stale).
func (s *Etcd) DeleteAt(ctx context.Context, id string, rev int64) error {
	if !ValidID(id) {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	mark, err := json.Marshal(deletion{ID: id, Since: now()})
	if err != nil {
		return fmt.Errorf("tenant: delete %s: %w", id, err)
	}
	adminDir := s.prefix + dirAdminKeys
	for attempt := 0; ; attempt++ {
		// Admin keys are not filed under their tenant: find this tenant's,
		// and delete them only if no admin key changed since (else retry).
		resp, err := s.cli.Get(ctx, adminDir, clientv3.WithPrefix())
		if err != nil {
			return fmt.Errorf("tenant: delete %s: %w", id, err)
		}
		ops := []clientv3.Op{
			clientv3.OpPut(s.deletingKey(id), string(mark)),
			clientv3.OpDelete(s.tenantDir(dirKeys, id), clientv3.WithPrefix()),
			clientv3.OpDelete(s.tenantDir(dirJWTKeys, id), clientv3.WithPrefix()),
			clientv3.OpDelete(s.tenantDir(dirMTLS, id), clientv3.WithPrefix()),
		}
		for _, kv := range resp.Kvs {
			if k, err := decodeRecord[AdminKey](kv); err == nil && k.Tenant == id {
				ops = append(ops, clientv3.OpDelete(string(kv.Key)))
			}
		}
		key := s.Key(id)
		txn, err := s.cli.Txn(ctx).
			If(append(s.exists(key, rev),
				clientv3.Compare(clientv3.ModRevision(adminDir), "<", resp.Header.Revision+1).WithPrefix())...).
			Then(append([]clientv3.Op{clientv3.OpDelete(key)}, ops...)...).
			Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return fmt.Errorf("tenant: delete %s: %w", id, err)
		}
		if txn.Succeeded {
			return nil
		}
		found := txn.Responses[0].GetResponseRange().Kvs
		if err := s.missingOrConflict(txn, key, rev); len(found) == 0 ||
			rev != 0 && found[0].ModRevision != rev || attempt == 5 {
			return err
		}
	}
}

// dirDeleting holds the tenants being deleted: deleting/<tenant>.
const dirDeleting = "deleting/"

// deletion is the record of a tenant being deleted.
type deletion struct {
	ID    string    `json:"id"`
	Since time.Time `json:"since"`
}

func (s *Etcd) deletingKey(id string) string { return s.prefix + dirDeleting + id }

// Deleting lists the tenants being deleted (DeleteAt done, FinishDelete
// not yet), in ID order.
func (s *Etcd) Deleting(ctx context.Context) ([]string, error) {
	dir := s.prefix + dirDeleting
	kvs, _, err := s.readAll(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("tenant: list deletions: %w", err)
	}
	var out []string
	for _, kv := range kvs {
		if id := strings.TrimPrefix(string(kv.Key), dir); ValidID(id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// IsDeleting reports whether the tenant id is being deleted.
func (s *Etcd) IsDeleting(ctx context.Context, id string) (bool, error) {
	if !ValidID(id) {
		return false, fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	resp, err := s.cli.Get(ctx, s.deletingKey(id), clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("tenant: get %s: %w", id, err)
	}
	return resp.Count > 0, nil
}

// FinishDelete ends the deletion of tenant id, once its data is gone: the
// ID can be created again. Finishing a deletion that is not in progress is
// not an error.
func (s *Etcd) FinishDelete(ctx context.Context, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	if _, err := s.cli.Delete(ctx, s.deletingKey(id)); err != nil {
		return fmt.Errorf("tenant: finish deleting %s: %w", id, err)
	}
	return nil
}

// Watch retry delays: after a failed reload or a watch that ended early.
const (
	minRetry = 100 * time.Millisecond
	maxRetry = 5 * time.Second
)

// resetPageSize bounds each read of a reload, so that a large tenant set
// never has to fit one gRPC message. A variable for tests.
var resetPageSize int64 = 1000

// Watch implements Source.
func (s *Etcd) Watch(ctx context.Context) <-chan Event {
	out := make(chan Event)
	go s.watchTenants(ctx, out, 0)
	return out
}

// watchTenants feeds out with the tenants' events until ctx is done, then
// closes it.
func (s *Etcd) watchTenants(ctx context.Context, out chan<- Event, from int64) {
	defer close(out)
	s.watch(ctx, s.dir, from, func(r rawEvent) bool {
		var e Event
		switch r.typ {
		case EventReset:
			e = Event{Type: EventReset, Revision: r.rev, Tenants: s.decodeAll(r.kvs)}
		case EventDelete:
			e = Event{Type: EventDelete, Revision: r.rev}
			e.Tenant.ID = strings.TrimPrefix(string(r.kv.Key), s.dir)
			if !ValidID(e.Tenant.ID) {
				return true
			}
		case EventPut:
			t, err := s.decode(r.kv.Key, r.kv.Value, r.kv.ModRevision)
			if err != nil {
				s.log.Warn("tenant watch: skipping undecodable tenant", "err", err)
				return true
			}
			e = Event{Type: EventPut, Revision: r.rev, Tenant: t}
		}
		return send(ctx, out, e)
	})
}

// rawEvent is one change under a watched directory: a reset with every
// key-value (kvs), or one put or delete (kv).
type rawEvent struct {
	typ EventType
	rev int64
	kvs []*mvccpb.KeyValue
	kv  *mvccpb.KeyValue
}

// watch calls emit with every change under dir until ctx is done or emit
// returns false. It follows the store from revision from+1, or when from is
// 0, or whenever following fails, reloads first (an EventReset). It keeps
// the guarantees documented on Source.Watch.
func (s *Etcd) watch(ctx context.Context, dir string, from int64, emit func(rawEvent) bool) {
	delay := minRetry
	for {
		if from == 0 {
			rev, err := s.reset(ctx, dir, emit)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("tenant watch: reload failed", "dir", dir, "err", err, "retry_in", delay)
			}
			from = rev
		}
		if from != 0 {
			started := time.Now()
			if !s.follow(ctx, dir, from, emit) {
				return
			}
			from = 0
			if time.Since(started) > maxRetry {
				// It ran healthily for a while: start the backoff over.
				delay = minRetry
			}
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, maxRetry)
	}
}

// reset reads every key under dir at one revision, emits them as an
// EventReset and returns that revision; 0 if it failed or emit refused.
func (s *Etcd) reset(ctx context.Context, dir string, emit func(rawEvent) bool) (int64, error) {
	kvs, rev, err := s.readAll(ctx, dir)
	if err != nil {
		return 0, err
	}
	if !emit(rawEvent{typ: EventReset, rev: rev, kvs: kvs}) {
		return 0, ctx.Err()
	}
	return rev, nil
}

// readAll reads every key under dir, a page of resetPageSize at a time
// (so that a large directory never has to fit one gRPC message), all at
// the revision of the first page, and returns them with that revision.
func (s *Etcd) readAll(ctx context.Context, dir string) ([]*mvccpb.KeyValue, int64, error) {
	var (
		kvs  []*mvccpb.KeyValue
		rev  int64
		from = dir
		end  = clientv3.GetPrefixRangeEnd(dir)
	)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(resetPageSize)}
		if rev != 0 {
			// Later pages read the revision of the first.
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		kvs = append(kvs, resp.Kvs...)
		if !resp.More || len(resp.Kvs) == 0 {
			return kvs, rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// follow emits every change under dir after revision from until the watch
// ends — compacted past from, leader lost, canceled by the server — and
// returns true, or until ctx is done or emit refuses, and returns false.
func (s *Etcd) follow(ctx context.Context, dir string, from int64, emit func(rawEvent) bool) bool {
	// Without a leader the member may be cut off from newer revisions;
	// WithRequireLeader ends the watch then, and a reload catches up.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range s.cli.Watch(wctx, dir, clientv3.WithPrefix(), clientv3.WithRev(from+1)) {
		if resp.CompactRevision != 0 {
			s.log.Info("tenant watch: history compacted, reloading", "dir", dir, "revision", from, "compacted", resp.CompactRevision)
			return true
		}
		if err := resp.Err(); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("tenant watch: ended, reloading", "dir", dir, "err", err)
			}
			return ctx.Err() == nil
		}
		for _, ev := range resp.Events {
			r := rawEvent{typ: EventPut, rev: ev.Kv.ModRevision, kv: ev.Kv}
			if ev.Type == clientv3.EventTypeDelete {
				r.typ = EventDelete
			}
			if !emit(r) {
				return false
			}
		}
	}
	return ctx.Err() == nil
}

func send(ctx context.Context, out chan<- Event, e Event) bool {
	select {
	case out <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// decode turns one key-value into a Tenant. The key, not the value, names
// the tenant.
func (s *Etcd) decode(key, value []byte, rev int64) (Tenant, error) {
	id := strings.TrimPrefix(string(key), s.dir)
	if !ValidID(id) {
		return Tenant{}, fmt.Errorf("tenant: key %q: %w", key, ErrInvalidID)
	}
	var t Tenant
	if err := json.Unmarshal(value, &t); err != nil {
		return Tenant{}, fmt.Errorf("tenant: key %q: %w", key, err)
	}
	t.ID = id
	t.Revision = rev
	return t, nil
}

// decodeAll decodes kvs, logging and skipping what does not decode: one
// damaged entry must not hide every other tenant.
func (s *Etcd) decodeAll(kvs []*mvccpb.KeyValue) []Tenant {
	tenants := make([]Tenant, 0, len(kvs))
	for _, kv := range kvs {
		t, err := s.decode(kv.Key, kv.Value, kv.ModRevision)
		if err != nil {
			s.log.Warn("tenant: skipping undecodable tenant", "err", err)
			continue
		}
		tenants = append(tenants, t)
	}
	return tenants
}

var _ Source = (*Etcd)(nil)

// Ensure creates t if no tenant with its ID exists; an existing tenant is
// left as it is. It serves bootstrapping (the development tenant). While a
// tenant of that ID is being deleted it returns ErrDeleting.
func (s *Etcd) Ensure(ctx context.Context, t Tenant) error {
	_, err := s.Create(ctx, t)
	if errors.Is(err, ErrAlreadyExists) {
		return nil
	}
	return err
}
