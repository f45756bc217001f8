package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/store"
)

// edgeSessionIDs pages through EdgeSessions two at a time and returns the
// client ids.
func edgeSessionIDs(t *testing.T, s store.Store, tenant, edge string) []string {
	t.Helper()
	var ids []string
	after := ""
	for {
		page, err := s.EdgeSessions(context.Background(), tenant, edge, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page {
			if p.Edge != edge || !p.DisconnectedAt.IsZero() {
				t.Fatalf("EdgeSessions(%q) listed %+v", edge, p)
			}
			ids = append(ids, p.ClientID)
		}
		if len(page) < 2 {
			return ids
		}
		after = page[len(page)-1].ClientID
	}
}

// testSessionEdges ensures connected sessions are listed under their edge
// (EdgeSessions, in client id order, paged; SessionEdges, each edge once),
// and that a save that disconnects a session or moves it to another edge,
// a delete and an expiry take it off its edge's list.
func testSessionEdges(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now()
	for _, sess := range []*store.Session{
		{ClientID: "a1", ExpiryInterval: 60, ConnectedTo: "edge-a/1", Edge: "edge-a~1"},
		{ClientID: "a2", ExpiryInterval: 60, ConnectedTo: "edge-a/2", Edge: "edge-a~1"},
		{ClientID: "a3", ExpiryInterval: 60, ConnectedTo: "edge-a/3", Edge: "edge-a~1"},
		{ClientID: "b1", ExpiryInterval: 60, ConnectedTo: "edge-b/1", Edge: "edge-b~1"},
		{ClientID: "c1", ExpiryInterval: 60, ConnectedTo: "edge-c/1"},
		{ClientID: "off", ExpiryInterval: 60, DisconnectedAt: now, Edge: "edge-a~1"},
	} {
		saveSession(t, s, "t1", sess, store.Limits{})
	}
	saveSession(t, s, "t2", &store.Session{ClientID: "x", ConnectedTo: "edge-z/1", Edge: "edge-z~1"}, store.Limits{})

	edges, err := s.SessionEdges(ctx, "t1")
	if err != nil || !slices.Equal(edges, []string{"edge-a~1", "edge-b~1"}) {
		t.Fatalf("SessionEdges = %v, %v", edges, err)
	}
	if got := edgeSessionIDs(t, s, "t1", "edge-a~1"); !slices.Equal(got, []string{"a1", "a2", "a3"}) {
		t.Fatalf("edge-a sessions %v", got)
	}
	if got := edgeSessionIDs(t, s, "t1", "edge-a"); len(got) != 0 {
		t.Fatalf("a prefix of an edge name listed %v", got)
	}
	if got := edgeSessionIDs(t, s, "t1", "edge-z~1"); len(got) != 0 {
		t.Fatalf("another tenant's session listed %v", got)
	}

	load := func(id string) *store.Session {
		t.Helper()
		sess, err := s.LoadSession(ctx, "t1", id)
		if err != nil {
			t.Fatal(err)
		}
		return sess
	}
	a1 := load("a1")
	a1.ConnectedTo, a1.Edge, a1.DisconnectedAt = "", "", now // disconnected
	saveSession(t, s, "t1", a1, store.Limits{})
	a2 := load("a2")
	a2.ConnectedTo, a2.Edge = "edge-b/9", "edge-b~1" // taken over on another edge
	saveSession(t, s, "t1", a2, store.Limits{})
	if got := edgeSessionIDs(t, s, "t1", "edge-a~1"); !slices.Equal(got, []string{"a3"}) {
		t.Fatalf("edge-a after saves %v", got)
	}
	if got := edgeSessionIDs(t, s, "t1", "edge-b~1"); !slices.Equal(got, []string{"a2", "b1"}) {
		t.Fatalf("edge-b after saves %v", got)
	}
	if err := s.DeleteSession(ctx, "t1", "a3", 0); err != nil {
		t.Fatal(err)
	}
	b1 := load("b1")
	b1.DisconnectedAt, b1.ExpiryInterval = now.Add(-time.Hour), 1 // expired, edge field kept
	saveSession(t, s, "t1", b1, store.Limits{})
	if _, err := s.ExpireSessions(ctx, "t1", now, 0); err != nil {
		t.Fatal(err)
	}
	if edges, err := s.SessionEdges(ctx, "t1"); err != nil || !slices.Equal(edges, []string{"edge-b~1"}) {
		t.Fatalf("SessionEdges after delete and expiry = %v, %v", edges, err)
	}
	if err := s.DeleteTenant(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if edges, err := s.SessionEdges(ctx, "t1"); err != nil || len(edges) != 0 {
		t.Fatalf("SessionEdges of a deleted tenant = %v, %v", edges, err)
	}
	if _, err := s.EdgeSessions(ctx, "t1", "", "", 0); !errors.Is(err, store.ErrBadEdge) {
		t.Fatalf("empty edge name: %v", err)
	}
}

// testEdgeLeases ensures edge leases are set, renewed, listed (lapsed ones
// included) and deleted, and that invalid edge names are refused.
func testEdgeLeases(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	if m, err := s.EdgeLeases(ctx); err != nil || len(m) != 0 {
		t.Fatalf("EdgeLeases of a new store = %v, %v", m, err)
	}
	for edge, until := range map[string]time.Time{"e1~a": now.Add(10 * time.Second), "e2~b": now.Add(-time.Minute)} {
		if err := s.RenewEdgeLease(ctx, edge, until); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RenewEdgeLease(ctx, "e1~a", now.Add(20*time.Second)); err != nil {
		t.Fatal(err)
	}
	m, err := s.EdgeLeases(ctx)
	if err != nil || len(m) != 2 || !m["e1~a"].Equal(now.Add(20*time.Second)) || !m["e2~b"].Equal(now.Add(-time.Minute)) {
		t.Fatalf("EdgeLeases = %v, %v", m, err)
	}
	if err := s.DeleteEdgeLease(ctx, "e2~b"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteEdgeLease(ctx, "unknown"); err != nil {
		t.Fatalf("deleting an unknown edge: %v", err)
	}
	if m, err := s.EdgeLeases(ctx); err != nil || len(m) != 1 || m["e2~b"] != (time.Time{}) {
		t.Fatalf("EdgeLeases after delete = %v, %v", m, err)
	}
	for _, bad := range []string{"", "a\x00b"} {
		if err := s.RenewEdgeLease(ctx, bad, now); !errors.Is(err, store.ErrBadEdge) {
			t.Errorf("RenewEdgeLease(%q) = %v, want ErrBadEdge", bad, err)
		}
	}
	if err := s.SaveSession(ctx, "t1", &store.Session{ClientID: "c", Edge: "a\x00b"}, store.Limits{}); !errors.Is(err, store.ErrBadSession) {
		t.Errorf("session with a NUL in its edge: %v, want ErrBadSession", err)
	}
}
