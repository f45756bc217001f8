// Package tenanttest is the conformance suite every tenant.Source
// implementation runs: it checks the guarantees documented on the interface.
package tenanttest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/tenant"
)

// Store is a tenant.Source the suite can write to, with the semantics of
// tenant.Etcd's Put and Delete.
type Store interface {
	tenant.Source
	Put(ctx context.Context, t tenant.Tenant) (tenant.Tenant, error)
	Delete(ctx context.Context, id string) error
}

// eventTimeout bounds the wait for one watch event.
const eventTimeout = 10 * time.Second

// Run runs the suite; newStore returns an empty store, isolated from every
// other it returns.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	t.Run("GetInvalidID", func(t *testing.T) { testGetInvalidID(t, newStore(t)) })
	t.Run("GetMissing", func(t *testing.T) { testGetMissing(t, newStore(t)) })
	t.Run("PutGet", func(t *testing.T) { testPutGet(t, newStore(t)) })
	t.Run("PutConflict", func(t *testing.T) { testPutConflict(t, newStore(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newStore(t)) })
	t.Run("ListEmpty", func(t *testing.T) { testListEmpty(t, newStore(t)) })
	t.Run("ListPages", func(t *testing.T) { testListPages(t, newStore(t)) })
	t.Run("ListInvalidPage", func(t *testing.T) { testListInvalidPage(t, newStore(t)) })
	t.Run("Watch", func(t *testing.T) { testWatch(t, newStore(t)) })
	t.Run("WatchClosesOnCancel", func(t *testing.T) { testWatchClosesOnCancel(t, newStore(t)) })
}

// testGetInvalidID ensures Get, Put and Delete reject ids outside the alphabet with ErrInvalidID.
func testGetInvalidID(t *testing.T, s Store) {
	ctx := t.Context()
	for _, id := range []string{"", "Dev", "-dev", "_dev", "a/b", "a.b", "a b", "é", strings.Repeat("a", 64)} {
		if _, err := s.Get(ctx, id); !errors.Is(err, tenant.ErrInvalidID) {
			t.Errorf("Get(%q) = %v, want ErrInvalidID", id, err)
		}
		if _, err := s.Put(ctx, tenant.Tenant{ID: id}); !errors.Is(err, tenant.ErrInvalidID) {
			t.Errorf("Put(%q) = %v, want ErrInvalidID", id, err)
		}
		if err := s.Delete(ctx, id); !errors.Is(err, tenant.ErrInvalidID) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidID", id, err)
		}
	}
}

// testGetMissing ensures Get of an unknown tenant is ErrNotFound.
func testGetMissing(t *testing.T, s Store) {
	if _, err := s.Get(t.Context(), "nobody"); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
}

// testPutGet ensures Get returns what Put stored, with the revision Put reported, and that revisions grow.
func testPutGet(t *testing.T, s Store) {
	ctx := t.Context()
	created := time.Date(2026, 11, 24, 10, 0, 0, 123456789, time.UTC)
	p1, err := s.Put(ctx, tenant.Tenant{ID: "dev", DisplayName: "Development", CreatedAt: created})
	if err != nil {
		t.Fatal(err)
	}
	if p1.Revision <= 0 {
		t.Fatalf("Put revision %d, want > 0", p1.Revision)
	}
	got, err := s.Get(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if !equal(got, p1) || !got.CreatedAt.Equal(created) {
		t.Fatalf("Get = %+v, want %+v", got, p1)
	}

	p1.DisplayName = "Dev"
	p2, err := s.Put(ctx, p1)
	if err != nil {
		t.Fatal(err)
	}
	if p2.Revision <= p1.Revision {
		t.Fatalf("revision %d after %d, want growth", p2.Revision, p1.Revision)
	}
	if got, _ := s.Get(ctx, "dev"); !equal(got, p2) {
		t.Fatalf("Get after update = %+v, want %+v", got, p2)
	}

	fresh, err := s.Put(ctx, tenant.Tenant{ID: "fresh"})
	if err != nil {
		t.Fatal(err)
	}
	if fresh.CreatedAt.IsZero() || time.Since(fresh.CreatedAt) > time.Minute {
		t.Fatalf("Put set CreatedAt %v, want about now", fresh.CreatedAt)
	}
}

// testPutConflict ensures a Put at a stale revision fails with ErrConflict and changes nothing.
func testPutConflict(t *testing.T, s Store) {
	ctx := t.Context()
	v1, err := s.Put(ctx, tenant.Tenant{ID: "dev", DisplayName: "one"})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := s.Put(ctx, tenant.Tenant{ID: "dev", DisplayName: "two", CreatedAt: v1.CreatedAt, Revision: v1.Revision})
	if err != nil {
		t.Fatal(err)
	}
	v1.DisplayName = "three"
	if _, err := s.Put(ctx, v1); !errors.Is(err, tenant.ErrConflict) {
		t.Fatalf("stale Put = %v, want ErrConflict", err)
	}
	if got, _ := s.Get(ctx, "dev"); !equal(got, v2) {
		t.Fatalf("after a conflict Get = %+v, want %+v", got, v2)
	}
	if _, err := s.Put(ctx, tenant.Tenant{ID: "gone", Revision: v2.Revision}); !errors.Is(err, tenant.ErrConflict) {
		t.Fatalf("conditional Put of a missing tenant = %v, want ErrConflict", err)
	}
}

// testDelete ensures Delete removes a tenant, and is ErrNotFound when there is none.
func testDelete(t *testing.T, s Store) {
	ctx := t.Context()
	if _, err := s.Put(ctx, tenant.Tenant{ID: "dev"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "dev"); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "dev"); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
}

// testListEmpty ensures an empty store lists one empty, last page.
func testListEmpty(t *testing.T, s Store) {
	got, next, err := s.List(t.Context(), 0, "")
	if err != nil || len(got) != 0 || next != "" {
		t.Fatalf("List = %v, %q, %v; want nothing", got, next, err)
	}
}

// testListPages ensures paging returns every tenant once, in ID order, with a next token exactly when more remain.
func testListPages(t *testing.T, s Store) {
	ctx := t.Context()
	// IDs chosen so that byte order differs from a naive sort of names.
	ids := []string{"a", "a-b", "a0", "a_b", "b", "dev", "z9"}
	for _, id := range slices.Backward(ids) {
		if _, err := s.Put(ctx, tenant.Tenant{ID: id, DisplayName: "T " + id}); err != nil {
			t.Fatal(err)
		}
	}
	for _, size := range []int{1, 2, 3, len(ids), len(ids) + 1, 0} {
		t.Run(fmt.Sprint("size", size), func(t *testing.T) {
			var got []string
			token := ""
			for pages := 0; ; pages++ {
				if pages > len(ids) {
					t.Fatal("too many pages")
				}
				page, next, err := s.List(ctx, size, token)
				if err != nil {
					t.Fatal(err)
				}
				if size > 0 && len(page) > size {
					t.Fatalf("page of %d, asked for %d", len(page), size)
				}
				for _, tn := range page {
					if tn.DisplayName != "T "+tn.ID || tn.Revision <= 0 {
						t.Fatalf("listed %+v", tn)
					}
					got = append(got, tn.ID)
				}
				if next == "" {
					break
				}
				if len(page) == 0 {
					t.Fatal("empty page with a next token")
				}
				token = next
			}
			if !slices.Equal(got, ids) {
				t.Fatalf("listed %v, want %v", got, ids)
			}
		})
	}
	// The last page of an exact fit carries no token.
	if _, next, _ := s.List(ctx, len(ids), ""); next != "" {
		t.Fatalf("exact-fit page has next token %q", next)
	}
}

// testListInvalidPage ensures a negative page size or a foreign token is ErrInvalidPage.
func testListInvalidPage(t *testing.T, s Store) {
	ctx := t.Context()
	if _, _, err := s.List(ctx, -1, ""); !errors.Is(err, tenant.ErrInvalidPage) {
		t.Errorf("List(-1) = %v, want ErrInvalidPage", err)
	}
	for _, token := range []string{"!!!", "not a token", "Lw"} {
		if _, _, err := s.List(ctx, 1, token); !errors.Is(err, tenant.ErrInvalidPage) {
			t.Errorf("List(token %q) = %v, want ErrInvalidPage", token, err)
		}
	}
}

// testWatch ensures a watch starts with a reset of the existing tenants, then reports each change in order with the writer's revisions.
func testWatch(t *testing.T, s Store) {
	ctx := t.Context()
	a, err := s.Put(ctx, tenant.Tenant{ID: "a", DisplayName: "A"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Put(ctx, tenant.Tenant{ID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	events := s.Watch(ctx)
	reset := Next(t, events)
	if reset.Type != tenant.EventReset || reset.Revision < b.Revision {
		t.Fatalf("first event %v at %d, want a reset at >= %d", reset.Type, reset.Revision, b.Revision)
	}
	if len(reset.Tenants) != 2 || !equal(reset.Tenants[0], a) || !equal(reset.Tenants[1], b) {
		t.Fatalf("reset holds %+v, want %+v and %+v", reset.Tenants, a, b)
	}

	c, err := s.Put(ctx, tenant.Tenant{ID: "c", DisplayName: "C"})
	if err != nil {
		t.Fatal(err)
	}
	a.DisplayName = "A2"
	a, err = s.Put(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		typ tenant.EventType
		t   tenant.Tenant
	}{{tenant.EventPut, c}, {tenant.EventPut, a}, {tenant.EventDelete, tenant.Tenant{ID: "b"}}}
	last := reset.Revision
	for _, w := range want {
		e := Next(t, events)
		if e.Type != w.typ || e.Tenant.ID != w.t.ID || e.Revision <= last {
			t.Fatalf("event %v %s at %d after %d, want %v %s", e.Type, e.Tenant.ID, e.Revision, last, w.typ, w.t.ID)
		}
		if w.typ == tenant.EventPut && (!equal(e.Tenant, w.t) || e.Revision != w.t.Revision) {
			t.Fatalf("put event %+v at %d, want %+v", e.Tenant, e.Revision, w.t)
		}
		last = e.Revision
	}
}

// testWatchClosesOnCancel ensures the watch channel closes once its context is done.
func testWatchClosesOnCancel(t *testing.T, s Store) {
	ctx, cancel := context.WithCancel(t.Context())
	events := s.Watch(ctx)
	if e := Next(t, events); e.Type != tenant.EventReset {
		t.Fatalf("first event %v, want reset", e.Type)
	}
	cancel()
	deadline := time.After(eventTimeout)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel still open after cancel")
		}
	}
}

// Next receives one event, failing the test if none comes in time or the
// channel is closed.
func Next(tb testing.TB, events <-chan tenant.Event) tenant.Event {
	tb.Helper()
	select {
	case e, ok := <-events:
		if !ok {
			tb.Fatal("watch channel closed")
		}
		return e
	case <-time.After(eventTimeout):
		tb.Fatal("no watch event")
	}
	panic("unreachable")
}

// equal compares tenants field by field; CreatedAt by instant.
func equal(a, b tenant.Tenant) bool {
	return a.ID == b.ID && a.DisplayName == b.DisplayName && a.CreatedAt.Equal(b.CreatedAt) && a.Revision == b.Revision
}
