package tenant

import (
	"context"
	"encoding/base64"
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
	Prefix string `yaml:"prefix"`
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
	cli *clientv3.Client
	dir string // Prefix + "tenants/"
	log *slog.Logger
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
	return &Etcd{cli: cli, dir: cfg.Prefix + "tenants/", log: log}, nil
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
	switch {
	case pageSize < 0:
		return nil, "", fmt.Errorf("%w: page size %d", ErrInvalidPage, pageSize)
	case pageSize == 0:
		pageSize = DefaultPageSize
	case pageSize > MaxPageSize:
		pageSize = MaxPageSize
	}
	from := s.dir
	if pageToken != "" {
		last, err := base64.RawURLEncoding.DecodeString(pageToken)
		if err != nil || !ValidID(string(last)) {
			return nil, "", fmt.Errorf("%w: token %q", ErrInvalidPage, pageToken)
		}
		// The first key after last: keys are compared bytewise.
		from = s.Key(string(last)) + "\x00"
	}
	resp, err := s.cli.Get(ctx, from,
		clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.dir)),
		clientv3.WithLimit(int64(pageSize)))
	if err != nil {
		return nil, "", fmt.Errorf("tenant: list: %w", err)
	}
	tenants := s.decodeAll(resp.Kvs)
	var next string
	if resp.More && len(resp.Kvs) > 0 {
		lastKey := string(resp.Kvs[len(resp.Kvs)-1].Key)
		next = base64.RawURLEncoding.EncodeToString([]byte(strings.TrimPrefix(lastKey, s.dir)))
	}
	return tenants, next, nil
}

// Put stores t, setting CreatedAt to now if it is zero, and returns it with
// its new Revision. With t.Revision 0 it creates or replaces
// unconditionally; otherwise only if the stored tenant is still at that
// revision, else ErrConflict (also when it no longer exists).
func (s *Etcd) Put(ctx context.Context, t Tenant) (Tenant, error) {
	if !ValidID(t.ID) {
		return Tenant{}, fmt.Errorf("%w: %q", ErrInvalidID, t.ID)
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = time.Now().UTC()
	}
	value, err := json.Marshal(t)
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant: put %s: %w", t.ID, err)
	}
	key := s.Key(t.ID)
	if t.Revision == 0 {
		resp, err := s.cli.Put(ctx, key, string(value))
		if err != nil {
			return Tenant{}, fmt.Errorf("tenant: put %s: %w", t.ID, err)
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

// Delete removes the tenant id; ErrNotFound if there is none.
func (s *Etcd) Delete(ctx context.Context, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	resp, err := s.cli.Delete(ctx, s.Key(id))
	if err != nil {
		return fmt.Errorf("tenant: delete %s: %w", id, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
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
	go s.watch(ctx, out, 0)
	return out
}

// watch feeds out until ctx is done. It follows the store from revision
// from+1, or when from is 0, or whenever following fails, reloads first.
func (s *Etcd) watch(ctx context.Context, out chan<- Event, from int64) {
	defer close(out)
	delay := minRetry
	for {
		if from == 0 {
			rev, err := s.reset(ctx, out)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("tenant watch: reload failed", "err", err, "retry_in", delay)
			}
			from = rev
		}
		if from != 0 {
			started := time.Now()
			s.follow(ctx, out, from)
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

// reset reads every tenant at one revision, sends them as an EventReset and
// returns that revision; 0 if it failed or ctx ended first.
func (s *Etcd) reset(ctx context.Context, out chan<- Event) (int64, error) {
	var (
		tenants []Tenant
		rev     int64
		from    = s.dir
		end     = clientv3.GetPrefixRangeEnd(s.dir)
	)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(resetPageSize)}
		if rev != 0 {
			// Later pages read the revision of the first.
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		tenants = append(tenants, s.decodeAll(resp.Kvs)...)
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	if !send(ctx, out, Event{Type: EventReset, Revision: rev, Tenants: tenants}) {
		return 0, ctx.Err()
	}
	return rev, nil
}

// follow sends every change after revision from until ctx is done or the
// watch ends: compacted past from, leader lost, or canceled by the server.
func (s *Etcd) follow(ctx context.Context, out chan<- Event, from int64) {
	// Without a leader the member may be cut off from newer revisions;
	// WithRequireLeader ends the watch then, and a reload catches up.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range s.cli.Watch(wctx, s.dir, clientv3.WithPrefix(), clientv3.WithRev(from+1)) {
		if resp.CompactRevision != 0 {
			s.log.Info("tenant watch: history compacted, reloading", "revision", from, "compacted", resp.CompactRevision)
			return
		}
		if err := resp.Err(); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("tenant watch: ended, reloading", "err", err)
			}
			return
		}
		for _, ev := range resp.Events {
			e := Event{Type: EventPut, Revision: ev.Kv.ModRevision}
			if ev.Type == clientv3.EventTypeDelete {
				e.Type = EventDelete
				e.Tenant.ID = strings.TrimPrefix(string(ev.Kv.Key), s.dir)
				if !ValidID(e.Tenant.ID) {
					continue
				}
			} else {
				t, err := s.decode(ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
				if err != nil {
					s.log.Warn("tenant watch: skipping undecodable tenant", "err", err)
					continue
				}
				e.Tenant = t
			}
			if !send(ctx, out, e) {
				return
			}
		}
	}
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
// left as it is. It serves bootstrapping (the development tenant).
func (s *Etcd) Ensure(ctx context.Context, t Tenant) error {
	if _, err := s.Get(ctx, t.ID); err == nil || !errors.Is(err, ErrNotFound) {
		return err
	}
	_, err := s.Put(ctx, t)
	return err
}
