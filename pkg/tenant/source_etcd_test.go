package tenant_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/etcdserver"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/tenant/tenanttest"
	"github.com/heraldmq/herald/pkg/testserver"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var prefixes atomic.Int64

// newEtcd returns a source under a prefix of its own on the etcd at endpoint.
func newEtcd(t *testing.T, cli *clientv3.Client) *tenant.Etcd {
	t.Helper()
	s, err := tenant.NewEtcd(cli, tenant.EtcdConfig{Prefix: fmt.Sprintf("/test/%d/", prefixes.Add(1))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestEtcdConformance ensures the etcd source keeps the Source guarantees.
func TestEtcdConformance(t *testing.T) {
	cli := testserver.EtcdClient(t, testserver.Etcd(t))
	tenanttest.Run(t, func(t *testing.T) tenanttest.Store { return newEtcd(t, cli) })
}

// TestEtcdKeyLayout ensures a tenant is stored as JSON at <prefix>tenants/<id>, its revision being the key's mod revision.
func TestEtcdKeyLayout(t *testing.T) {
	cli := testserver.EtcdClient(t, testserver.Etcd(t))
	s, err := tenant.NewEtcd(cli, tenant.EtcdConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	put, err := s.Put(t.Context(), tenant.Tenant{ID: "dev", DisplayName: "Development", CreatedAt: created})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(t.Context(), "/herald/tenants/dev")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get key: %v, %d keys", err, len(resp.Kvs))
	}
	if resp.Kvs[0].ModRevision != put.Revision {
		t.Fatalf("mod revision %d, Put said %d", resp.Kvs[0].ModRevision, put.Revision)
	}
	var stored map[string]any
	if err := json.Unmarshal(resp.Kvs[0].Value, &stored); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": "dev", "display_name": "Development", "created_at": "2026-01-02T03:04:05Z"}
	if fmt.Sprint(stored) != fmt.Sprint(want) {
		t.Fatalf("stored %s, want %v", resp.Kvs[0].Value, want)
	}
}

// TestEtcdConfigValidate ensures a prefix without a trailing slash is rejected.
func TestEtcdConfigValidate(t *testing.T) {
	if err := (tenant.EtcdConfig{Prefix: "/herald"}).Validate(); err == nil {
		t.Fatal("prefix without trailing / accepted")
	}
	if err := (tenant.EtcdConfig{}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestEtcdSkipsUndecodable ensures a damaged value is skipped by List and Watch, not fatal to them, and is an error from Get.
func TestEtcdSkipsUndecodable(t *testing.T) {
	cli := testserver.EtcdClient(t, testserver.Etcd(t))
	s := newEtcd(t, cli)
	ctx := t.Context()
	if _, err := s.Put(ctx, tenant.Tenant{ID: "good"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, s.Key("bad"), "{"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "bad"); err == nil {
		t.Fatal("Get of a damaged tenant succeeded")
	}
	page, _, err := s.List(ctx, 10, "")
	if err != nil || len(page) != 1 || page[0].ID != "good" {
		t.Fatalf("List = %+v, %v; want only good", page, err)
	}
	if e := tenanttest.Next(t, s.Watch(ctx)); len(e.Tenants) != 1 || e.Tenants[0].ID != "good" {
		t.Fatalf("reset = %+v, want only good", e.Tenants)
	}
}

// TestEtcdWatchReloadsAfterCompaction ensures a watch resuming from a compacted revision starts over with a reset.
func TestEtcdWatchReloadsAfterCompaction(t *testing.T) {
	cli := testserver.EtcdClient(t, testserver.Etcd(t))
	s := newEtcd(t, cli)
	ctx := t.Context()
	a, err := s.Put(ctx, tenant.Tenant{ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Put(ctx, tenant.Tenant{ID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	c, err := s.Put(ctx, tenant.Tenant{ID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, c.Revision); err != nil {
		t.Fatal(err)
	}
	events := s.WatchFrom(ctx, a.Revision)
	e := tenanttest.Next(t, events)
	if e.Type != tenant.EventReset || e.Revision < c.Revision {
		t.Fatalf("first event %v at %d, want a reset at >= %d", e.Type, e.Revision, c.Revision)
	}
	if len(e.Tenants) != 2 || e.Tenants[0].ID != b.ID || e.Tenants[1].ID != c.ID {
		t.Fatalf("reset holds %+v, want b and c", e.Tenants)
	}
	d, err := s.Put(ctx, tenant.Tenant{ID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if e := tenanttest.Next(t, events); e.Type != tenant.EventPut || e.Revision != d.Revision {
		t.Fatalf("after the reset got %v at %d, want put d at %d", e.Type, e.Revision, d.Revision)
	}
}

// TestEtcdResetPages ensures a reload read in several pages holds every tenant once, in order.
func TestEtcdResetPages(t *testing.T) {
	tenant.SetResetPageSize(t, 2)
	cli := testserver.EtcdClient(t, testserver.Etcd(t))
	s := newEtcd(t, cli)
	ctx := t.Context()
	var want []string
	for i := range 5 {
		id := fmt.Sprint("t", i)
		if _, err := s.Put(ctx, tenant.Tenant{ID: id}); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	e := tenanttest.Next(t, s.Watch(ctx))
	var got []string
	for _, tn := range e.Tenants {
		got = append(got, tn.ID)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reset holds %v, want %v", got, want)
	}
}

// TestEtcdWatchSurvivesRestart ensures a watch keeps delivering changes after etcd stops and starts again.
func TestEtcdWatchSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	e, err := etcdserver.Start(etcdserver.Config{DataDir: dir, ClientAddr: "127.0.0.1:0", NoFsync: true, NoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	addr := e.ClientAddr()
	defer func() { e.Close() }()

	cli := testserver.EtcdClient(t, addr)
	s := newEtcd(t, cli)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := s.Put(ctx, tenant.Tenant{ID: "before"}); err != nil {
		t.Fatal(err)
	}
	events := s.Watch(ctx)
	seen := map[string]bool{}
	apply := func(ev tenant.Event) {
		switch ev.Type {
		case tenant.EventReset:
			clear(seen)
			for _, tn := range ev.Tenants {
				seen[tn.ID] = true
			}
		case tenant.EventPut:
			seen[ev.Tenant.ID] = true
		case tenant.EventDelete:
			delete(seen, ev.Tenant.ID)
		}
	}
	apply(tenanttest.Next(t, events))
	if !seen["before"] {
		t.Fatalf("reset missed before: %v", seen)
	}

	e.Close()
	e, err = etcdserver.Start(etcdserver.Config{DataDir: dir, ClientAddr: addr, NoFsync: true, NoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, tenant.Tenant{ID: "after"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	for seen["before"] || !seen["after"] {
		apply(tenanttest.Next(t, events))
	}
}
