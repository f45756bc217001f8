package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
)

func applyBatch(t *testing.T, s store.Store, tenant string, b store.Batch) store.ApplyResult {
	t.Helper()
	if b.Epoch == "" {
		b.Epoch = epoch
	}
	res, err := s.ApplyBatch(context.Background(), tenant, b)
	if err != nil {
		t.Fatalf("ApplyBatch(%s, %d msgs): %v", tenant, len(b.Messages), err)
	}
	return res
}

// testFencing ensures a writer with an older fence token changes nothing
// once a newer owner has a token, and that Fence issues increasing tokens.
func testFencing(t *testing.T, s store.Store) {
	ctx := context.Background()
	f1, err := s.Fence(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	applyBatch(t, s, "t1", store.Batch{Fence: f1, Messages: seqRange(1, 3)})
	f2, err := s.Fence(ctx, "t1")
	if err != nil || f2 <= f1 {
		t.Fatalf("second token %d after %d: %v", f2, f1, err)
	}
	// The old owner is fenced as soon as the new token is issued.
	for _, fence := range []uint64{f1, 0} {
		_, err := s.ApplyBatch(ctx, "t1", store.Batch{Epoch: epoch, Fence: fence, Messages: append(seqRange(4, 5), retained(6, "a", "stale"))})
		if !errors.Is(err, store.ErrFenced) {
			t.Fatalf("fence %d after %d: err %v, want ErrFenced", fence, f2, err)
		}
	}
	if err := s.Apply(ctx, "t1", epoch, seqRange(4, 5), store.ReplayLimits{}); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("unfenced Apply after Fence: %v", err)
	}
	wantState(t, s, "t1", store.ReplayState{Epoch: epoch, Applied: 3})
	if _, ok := retainedPayload(t, s, "t1", "a"); ok {
		t.Fatal("a fenced batch stored a retained message")
	}
	if res := applyBatch(t, s, "t1", store.Batch{Fence: f2, Messages: seqRange(4, 5)}); res.Applied != 5 {
		t.Fatalf("applied %d", res.Applied)
	}
	// Another tenant is not fenced.
	applyBatch(t, s, "t2", store.Batch{Messages: seqRange(1, 1)})
}

// testStateLost ensures a writer that knows more was applied than the store
// holds gets ErrStateLost and the store is left as it was.
func testStateLost(t *testing.T, s store.Store) {
	ctx := context.Background()
	// Nothing stored while the writer expects 5: the state was lost.
	if _, err := s.ApplyBatch(ctx, "t1", store.Batch{Epoch: epoch, Expect: 5, Messages: seqRange(6, 7)}); !errors.Is(err, store.ErrStateLost) {
		t.Fatalf("empty store, expect 5: %v", err)
	}
	wantState(t, s, "t1", store.ReplayState{})
	applyBatch(t, s, "t1", store.Batch{Messages: seqRange(1, 3)})
	if _, err := s.ApplyBatch(ctx, "t1", store.Batch{Epoch: epoch, Expect: 5, Messages: seqRange(6, 7)}); !errors.Is(err, store.ErrStateLost) {
		t.Fatalf("applied 3, expect 5: %v", err)
	}
	if _, err := s.ApplyBatch(ctx, "t1", store.Batch{Epoch: "other", Expect: 3}); !errors.Is(err, store.ErrStateLost) {
		t.Fatalf("other epoch, expect 3: %v", err)
	}
	wantState(t, s, "t1", store.ReplayState{Epoch: epoch, Applied: 3})
	// Expecting less than or exactly what is applied is fine (an overlap).
	applyBatch(t, s, "t1", store.Batch{Expect: 2, Messages: seqRange(3, 4)})
	if res := applyBatch(t, s, "t1", store.Batch{Expect: 4, Messages: seqRange(5, 5)}); res.Applied != 5 {
		t.Fatalf("applied %d", res.Applied)
	}
}

// testSkipThrough ensures sequences the stream no longer holds show up to
// readers as a trimmed prefix, and applying continues after them.
func testSkipThrough(t *testing.T, s store.Store) {
	applyBatch(t, s, "t1", store.Batch{Messages: seqRange(1, 3)})
	applyBatch(t, s, "t1", store.Batch{SkipThrough: 10, Messages: seqRange(11, 12)})
	p := replay(t, s, "t1", 0, 100)
	if got := seqs(p.Messages); !slices.Equal(got, []uint64{11, 12}) {
		t.Fatalf("replay %v", got)
	}
	if p.ReplayState != (store.ReplayState{Epoch: epoch, Applied: 12, TrimmedThrough: 10}) {
		t.Fatalf("state %+v", p.ReplayState)
	}
	// A SkipThrough at or below Applied changes nothing.
	applyBatch(t, s, "t1", store.Batch{SkipThrough: 11})
	if got := seqs(replay(t, s, "t1", 0, 100).Messages); !slices.Equal(got, []uint64{11, 12}) {
		t.Fatalf("replay %v", got)
	}
	// On an empty store (a rebuild from a stream that starts at 21).
	applyBatch(t, s, "t2", store.Batch{SkipThrough: 20, Messages: seqRange(21, 22)})
	wantState(t, s, "t2", store.ReplayState{Epoch: epoch, Applied: 22, TrimmedThrough: 20})
}

// testRetainedLimits ensures retained messages beyond the count or byte
// limit are not stored, counted as dropped, and leave no stale value, while
// deletes and replacements that fit still work.
func testRetainedLimits(t *testing.T, s store.Store) {
	lim := store.Limits{RetainedMessages: 3}
	res := applyBatch(t, s, "t1", store.Batch{Limits: lim, Messages: []*message.Message{
		retained(1, "a", "1"), retained(2, "b", "2"), retained(3, "c", "3"), retained(4, "d", "4"), retained(5, "a", "1b"),
	}})
	if res.RetainedDropped != 1 {
		t.Fatalf("dropped %d, want 1", res.RetainedDropped)
	}
	if got := retainedTopics(t, s, "t1", "#"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("retained %v", got)
	}
	if v, _ := retainedPayload(t, s, "t1", "a"); v != "1b" {
		t.Fatalf("replacement within the count limit: a = %q", v)
	}
	// A delete makes room.
	res = applyBatch(t, s, "t1", store.Batch{Limits: lim, Messages: []*message.Message{retained(6, "b", ""), retained(7, "d", "4")}})
	if res.RetainedDropped != 0 {
		t.Fatalf("dropped %d after a delete", res.RetainedDropped)
	}
	if res.RetainedMessages != 3 || res.RetainedBytes <= 0 {
		t.Fatalf("after the batch the result counts %d retained messages of %d bytes, want 3 and some", res.RetainedMessages, res.RetainedBytes)
	}
	if got := retainedTopics(t, s, "t1", "#"); !slices.Equal(got, []string{"a", "c", "d"}) {
		t.Fatalf("retained %v", got)
	}
	// Bytes: a replacement too big for the limit is refused and the old
	// value goes too, so readers never get a value older than a refused one.
	big := string(make([]byte, 4000))
	res = applyBatch(t, s, "t2", store.Batch{Limits: store.Limits{RetainedBytes: 6000}, Messages: []*message.Message{
		retained(1, "x", big), retained(2, "y", "small"), retained(3, "x", big+big), retained(4, "z", big+big),
	}})
	if res.RetainedDropped != 2 {
		t.Fatalf("dropped %d, want 2", res.RetainedDropped)
	}
	if got := retainedTopics(t, s, "t2", "#"); !slices.Equal(got, []string{"y"}) {
		t.Fatalf("retained %v", got)
	}
	// The bytes of x were given back: z fits now.
	res = applyBatch(t, s, "t2", store.Batch{Limits: store.Limits{RetainedBytes: 6000}, Messages: []*message.Message{retained(5, "z", big)}})
	if res.RetainedDropped != 0 {
		t.Fatalf("dropped %d", res.RetainedDropped)
	}
	if res.RetainedMessages != 2 || res.RetainedBytes < 4000 || res.RetainedBytes > 6000 {
		t.Fatalf("result counts %d retained messages of %d bytes, want 2 of 4,000–6,000", res.RetainedMessages, res.RetainedBytes)
	}
	if got := retainedTopics(t, s, "t2", "#"); !slices.Equal(got, []string{"y", "z"}) {
		t.Fatalf("retained %v", got)
	}
	// Dropped messages are still in the replay buffer: limits bound state,
	// not the stream.
	if got := seqs(replay(t, s, "t2", 0, 100).Messages); !slices.Equal(got, span(1, 5)) {
		t.Fatalf("replay %v", got)
	}
}

// testRetainedSweep ensures expired retained messages are deleted by a later
// ApplyBatch (not only hidden): they free their room under the limits.
func testRetainedSweep(t *testing.T, s store.Store) {
	lim := store.Limits{RetainedMessages: 2}
	short := retained(1, "a", "x")
	short.ExpiresAt = time.Now().Add(50 * time.Millisecond)
	long := retained(2, "b", "y")
	long.ExpiresAt = time.Now().Add(time.Hour)
	applyBatch(t, s, "t1", store.Batch{Limits: lim, Messages: []*message.Message{short, long}})
	// Replacing a with a message that never expires takes it off the index.
	keep := retained(3, "c", "z")
	res := applyBatch(t, s, "t1", store.Batch{Limits: lim, Messages: []*message.Message{keep}})
	if res.RetainedDropped != 1 {
		t.Fatalf("dropped %d: the limit counts unexpired a", res.RetainedDropped)
	}
	// a may have been swept by that batch already (after its messages).
	swept := res.RetainedExpired
	deadline := time.Now().Add(5 * time.Second)
	for swept < 1 {
		swept += applyBatch(t, s, "t1", store.Batch{Limits: lim}).RetainedExpired
		if time.Now().After(deadline) {
			t.Fatal("expired retained a never swept")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if swept != 1 {
		t.Fatalf("swept %d, want 1", swept)
	}
	res = applyBatch(t, s, "t1", store.Batch{Limits: lim, Messages: []*message.Message{retained(4, "c", "z")}})
	if res.RetainedDropped != 0 || res.RetainedExpired != 0 {
		t.Fatalf("after the sweep: %+v", res)
	}
	if got := retainedTopics(t, s, "t1", "#"); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("retained %v", got)
	}
	// A replacement of b without expiry must not be swept with b's old one.
	applyBatch(t, s, "t1", store.Batch{Limits: lim, Messages: []*message.Message{retained(5, "b", "forever")}})
	if v, ok := retainedPayload(t, s, "t1", "b"); !ok || v != "forever" {
		t.Fatalf("b = %q %v", v, ok)
	}
}

// testEpochChangeKeepsSessions ensures a recreated stream clears derived
// state but keeps sessions and the fence.
func testEpochChangeKeepsSessions(t *testing.T, s store.Store) {
	ctx := context.Background()
	f, err := s.Fence(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	applyBatch(t, s, "t1", store.Batch{Fence: f, Messages: seqRange(1, 2)})
	saveSession(t, s, "t1", &store.Session{ClientID: "c1"}, store.Limits{})
	applyBatch(t, s, "t1", store.Batch{Epoch: "e2", Fence: f, Messages: seqRange(1, 1)})
	wantState(t, s, "t1", store.ReplayState{Epoch: "e2", Applied: 1})
	if _, err := s.LoadSession(ctx, "t1", "c1"); err != nil {
		t.Fatalf("session after epoch change: %v", err)
	}
	if _, err := s.ApplyBatch(ctx, "t1", store.Batch{Epoch: "e2", Fence: f - 1}); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("fence after epoch change: %v", err)
	}
}

func saveSession(t *testing.T, s store.Store, tenant string, sess *store.Session, lim store.Limits) {
	t.Helper()
	if err := s.SaveSession(context.Background(), tenant, sess, lim); err != nil {
		t.Fatalf("SaveSession(%s, %s): %v", tenant, sess.ClientID, err)
	}
}

func fullSession(id string) *store.Session {
	return &store.Session{
		ClientID: id,
		Subscriptions: map[string]store.Subscription{
			"a/+":          {QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, ID: 7},
			"$share/g/b/#": {QoS: 2},
			"sensors/#":    {},
			"with space/é": {QoS: 1, ID: 268435455},
		},
		ExpiryInterval: 3600,
		ConnectedTo:    "edge-a/42",
		DisconnectedAt: time.Now().UTC().Truncate(time.Millisecond),
		Will: &store.Will{Topic: "w", Payload: []byte{0, 1}, QoS: 1, Retain: true, Delay: 5 * time.Second,
			MessageExpiry: time.Minute, ContentType: "text/plain", PayloadUTF8: true, ResponseTopic: "r",
			CorrelationData: []byte("c"), UserProperties: []message.UserProperty{{Key: "k", Value: "v"}}},
		Delivered: message.Position{Epoch: "e1", Seq: 1 << 40},
		Inflight: []store.Inflight{{PacketID: 1, Phase: store.AwaitPuback, Seq: 10},
			{PacketID: 65535, Phase: store.AwaitPubcomp, Seq: 11}, {PacketID: 3, Phase: store.AwaitPubrel, MsgID: "n1-3"}},
	}
}

// testSessionRoundTrip ensures a saved session loads back with every field,
// and an unknown one is ErrNoSession.
func testSessionRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.LoadSession(ctx, "t1", "c1"); !errors.Is(err, store.ErrNoSession) {
		t.Fatalf("unknown session: %v", err)
	}
	in := fullSession("c1")
	saveSession(t, s, "t1", in, store.Limits{})
	if in.Revision == 0 {
		t.Fatal("no revision after save")
	}
	got, err := s.LoadSession(ctx, "t1", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.DisconnectedAt.Equal(in.DisconnectedAt) {
		t.Fatalf("DisconnectedAt %v, want %v", got.DisconnectedAt, in.DisconnectedAt)
	}
	got.DisconnectedAt = in.DisconnectedAt
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("loaded %+v\nwant %+v", got, in)
	}
	// A minimal session, connected, round-trips too.
	min := &store.Session{ClientID: "c2"}
	saveSession(t, s, "t1", min, store.Limits{})
	got, err = s.LoadSession(ctx, "t1", "c2")
	if err != nil || got.ClientID != "c2" || got.Will != nil || len(got.Subscriptions) != 0 || !got.DisconnectedAt.IsZero() {
		t.Fatalf("minimal session %+v, %v", got, err)
	}
}

// testSessionRevisions ensures saves and deletes are conditional on the
// revision read, and revisions are never reused after a delete.
func testSessionRevisions(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := &store.Session{ClientID: "c1", ExpiryInterval: 10}
	saveSession(t, s, "t1", a, store.Limits{})
	first := a.Revision
	dup := &store.Session{ClientID: "c1"}
	if err := s.SaveSession(ctx, "t1", dup, store.Limits{}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("create over an existing session: %v", err)
	}
	stale := *a
	a.ExpiryInterval = 20
	saveSession(t, s, "t1", a, store.Limits{})
	if a.Revision == first {
		t.Fatal("revision unchanged by a save")
	}
	if err := s.SaveSession(ctx, "t1", &stale, store.Limits{}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("save with a stale revision: %v", err)
	}
	if err := s.DeleteSession(ctx, "t1", "c1", stale.Revision); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("delete with a stale revision: %v", err)
	}
	got, _ := s.LoadSession(ctx, "t1", "c1")
	if got == nil || got.ExpiryInterval != 20 || got.Revision != a.Revision {
		t.Fatalf("after conflicts: %+v", got)
	}
	if err := s.DeleteSession(ctx, "t1", "c1", a.Revision); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(ctx, "t1", "c1", 0); err != nil {
		t.Fatalf("deleting a deleted session: %v", err)
	}
	// Recreated: a writer holding a revision from before the delete must
	// not match the new session.
	b := &store.Session{ClientID: "c1"}
	saveSession(t, s, "t1", b, store.Limits{})
	for _, old := range []uint64{first, a.Revision} {
		if b.Revision == old {
			t.Fatalf("revision %d reused", old)
		}
	}
	if n, _ := s.CountSessions(ctx, "t1"); n != 1 {
		t.Fatalf("count %d", n)
	}
	// Delete with revision 0 deletes whatever is there.
	if err := s.DeleteSession(ctx, "t1", "c1", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadSession(ctx, "t1", "c1"); !errors.Is(err, store.ErrNoSession) {
		t.Fatalf("after delete: %v", err)
	}
}

// testSessionLimit ensures a tenant cannot create sessions beyond its limit,
// while existing ones can still be saved and deleting makes room.
func testSessionLimit(t *testing.T, s store.Store) {
	ctx := context.Background()
	lim := store.Limits{Sessions: 2}
	a, b := &store.Session{ClientID: "a"}, &store.Session{ClientID: "b"}
	saveSession(t, s, "t1", a, lim)
	saveSession(t, s, "t1", b, lim)
	if err := s.SaveSession(ctx, "t1", &store.Session{ClientID: "c"}, lim); !errors.Is(err, store.ErrSessionLimit) {
		t.Fatalf("third session: %v", err)
	}
	if _, err := s.LoadSession(ctx, "t1", "c"); !errors.Is(err, store.ErrNoSession) {
		t.Fatalf("refused session stored: %v", err)
	}
	a.ExpiryInterval = 5
	saveSession(t, s, "t1", a, lim)
	if err := s.DeleteSession(ctx, "t1", "b", 0); err != nil {
		t.Fatal(err)
	}
	saveSession(t, s, "t1", &store.Session{ClientID: "c"}, lim)
	if n, err := s.CountSessions(ctx, "t1"); n != 2 || err != nil {
		t.Fatalf("count %d, %v", n, err)
	}
	// The limit is per tenant.
	saveSession(t, s, "t2", &store.Session{ClientID: "a"}, lim)
}

// testSessionPaging ensures Sessions walks every session once, in client id
// order, page by page.
func testSessionPaging(t *testing.T, s store.Store) {
	ctx := context.Background()
	var want []string
	for i := range 23 {
		id := fmt.Sprintf("client-%02d", i)
		want = append(want, id)
		saveSession(t, s, "t1", &store.Session{ClientID: id}, store.Limits{})
	}
	saveSession(t, s, "t2", &store.Session{ClientID: "other"}, store.Limits{})
	var got []string
	for after := ""; ; {
		page, err := s.Sessions(ctx, "t1", after, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 5 {
			t.Fatalf("page of %d", len(page))
		}
		for _, p := range page {
			got = append(got, p.ClientID)
			if p.Revision == 0 {
				t.Fatalf("%s listed without a revision", p.ClientID)
			}
		}
		after = page[len(page)-1].ClientID
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged %v", got)
	}
	if n, _ := s.CountSessions(ctx, "t1"); n != 23 {
		t.Fatalf("count %d", n)
	}
	if page, err := s.Sessions(ctx, "empty", "", 0); err != nil || len(page) != 0 {
		t.Fatalf("empty tenant: %v %v", page, err)
	}
	if n, err := s.CountSessions(ctx, "empty"); err != nil || n != 0 {
		t.Fatalf("empty tenant count %d %v", n, err)
	}
}

// testSessionExpiry ensures ExpireSessions deletes exactly the disconnected
// sessions past their expiry interval, returns them with their wills, and
// that a reconnect (a save while connected) takes a session off the clock.
func testSessionExpiry(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now()
	past := now.Add(-time.Hour)
	mk := func(id string, interval uint32, disc time.Time) *store.Session {
		return &store.Session{ClientID: id, ExpiryInterval: interval, DisconnectedAt: disc, Will: &store.Will{Topic: "will/" + id}}
	}
	for _, sess := range []*store.Session{
		mk("due", 60, past),     // expired an hour minus a minute ago
		mk("zero", 0, now),      // expiry 0: ends at disconnect
		mk("later", 7200, past), // an hour left
		mk("never", store.NeverExpires, past),
		mk("connected", 1, time.Time{}), // connected: no clock
		mk("reconnects", 60, past),      // due, but reconnects first
	} {
		saveSession(t, s, "t1", sess, store.Limits{})
	}
	r, err := s.LoadSession(ctx, "t1", "reconnects")
	if err != nil {
		t.Fatal(err)
	}
	r.DisconnectedAt, r.ConnectedTo = time.Time{}, "edge/1"
	saveSession(t, s, "t1", r, store.Limits{})

	expired, err := s.ExpireSessions(ctx, "t1", now, 1)
	if err != nil || len(expired) != 1 {
		t.Fatalf("max 1: %d sessions, %v", len(expired), err)
	}
	more, err := s.ExpireSessions(ctx, "t1", now, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range append(expired, more...) {
		ids = append(ids, e.ClientID)
		if e.Will == nil || e.Will.Topic != "will/"+e.ClientID {
			t.Fatalf("expired %s without its will: %+v", e.ClientID, e.Will)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"due", "zero"}) {
		t.Fatalf("expired %v", ids)
	}
	if again, _ := s.ExpireSessions(ctx, "t1", now, 0); len(again) != 0 {
		t.Fatalf("expired twice: %d", len(again))
	}
	if n, _ := s.CountSessions(ctx, "t1"); n != 4 {
		t.Fatalf("count %d", n)
	}
	// Much later, only "later" is due.
	late, err := s.ExpireSessions(ctx, "t1", now.Add(3*time.Hour), 0)
	if err != nil || len(late) != 1 || late[0].ClientID != "later" {
		t.Fatalf("3h later: %v %v", late, err)
	}
}

// testSessionDue ensures DueSessions lists, earliest first and without
// changing them, the connected sessions whose lease ran out and the
// disconnected ones whose will is due, and that a save moves a session off
// the index (lease renewed, will cleared) and a delete removes it.
func testSessionDue(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now()
	will := &store.Will{Topic: "w", Delay: time.Minute}
	for _, sess := range []*store.Session{
		{ClientID: "lapsed", ConnectedTo: "e/1", LeaseUntil: now.Add(-2 * time.Second)},
		{ClientID: "leased", ConnectedTo: "e/2", LeaseUntil: now.Add(time.Hour)},
		{ClientID: "will-due", ExpiryInterval: 3600, DisconnectedAt: now.Add(-2 * time.Minute), Will: will},
		{ClientID: "will-later", ExpiryInterval: 3600, DisconnectedAt: now, Will: will},
		{ClientID: "no-will", ExpiryInterval: 3600, DisconnectedAt: now.Add(-time.Hour)},
		{ClientID: "no-lease", ConnectedTo: "e/3"},
	} {
		saveSession(t, s, "t1", sess, store.Limits{})
	}
	ids := func(at time.Time) []string {
		t.Helper()
		due, err := s.DueSessions(ctx, "t1", at, 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range due {
			out = append(out, d.ClientID)
		}
		return out
	}
	if got := ids(now); !slices.Equal(got, []string{"will-due", "lapsed"}) {
		t.Fatalf("due now %v", got)
	}
	if got := ids(now); len(got) != 2 {
		t.Fatalf("DueSessions changed the index: %v", got)
	}
	if d, err := s.DueSessions(ctx, "t1", now, 1); err != nil || len(d) != 1 || d[0].ClientID != "will-due" || d[0].Will == nil {
		t.Fatalf("max 1: %v %v", d, err)
	}
	l, err := s.LoadSession(ctx, "t1", "lapsed")
	if err != nil {
		t.Fatal(err)
	}
	l.LeaseUntil = now.Add(30 * time.Minute) // renewed
	saveSession(t, s, "t1", l, store.Limits{})
	w, err := s.LoadSession(ctx, "t1", "will-due")
	if err != nil {
		t.Fatal(err)
	}
	w.Will = nil // fired
	saveSession(t, s, "t1", w, store.Limits{})
	if got := ids(now); len(got) != 0 {
		t.Fatalf("due after saves %v", got)
	}
	if got := ids(now.Add(2 * time.Hour)); !slices.Equal(got, []string{"will-later", "lapsed", "leased"}) {
		t.Fatalf("due in 2h %v", got)
	}
	if err := s.DeleteSession(ctx, "t1", "leased", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ExpireSessions(ctx, "t1", now.Add(2*time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if got := ids(now.Add(2 * time.Hour)); !slices.Equal(got, []string{"lapsed"}) {
		t.Fatalf("due after delete and expiry %v", got)
	}
}

// testSessionInvalid ensures malformed session calls fail with the
// documented errors.
func testSessionInvalid(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
		call func() error
	}{
		{"no client id", store.ErrBadSession, func() error { return s.SaveSession(ctx, "t1", &store.Session{}, store.Limits{}) }},
		{"nil", store.ErrBadSession, func() error { return s.SaveSession(ctx, "t1", nil, store.Limits{}) }},
		{"bad filter", store.ErrBadSession, func() error {
			return s.SaveSession(ctx, "t1", &store.Session{ClientID: "c", Subscriptions: map[string]store.Subscription{"a/#/b": {}}}, store.Limits{})
		}},
		{"bad shared filter", store.ErrBadSession, func() error {
			return s.SaveSession(ctx, "t1", &store.Session{ClientID: "c", Subscriptions: map[string]store.Subscription{"$share/g": {}}}, store.Limits{})
		}},
		{"bad tenant", store.ErrBadTenant, func() error { return s.SaveSession(ctx, "{t}", &store.Session{ClientID: "c"}, store.Limits{}) }},
		{"negative limit", store.ErrBadLimits, func() error {
			return s.SaveSession(ctx, "t1", &store.Session{ClientID: "c"}, store.Limits{Sessions: -1})
		}},
		{"load no id", store.ErrBadSession, func() error { _, err := s.LoadSession(ctx, "t1", ""); return err }},
		{"delete no id", store.ErrBadSession, func() error { return s.DeleteSession(ctx, "t1", "", 0) }},
		{"list bad tenant", store.ErrBadTenant, func() error { _, err := s.Sessions(ctx, "", "", 1); return err }},
		{"count bad tenant", store.ErrBadTenant, func() error { _, err := s.CountSessions(ctx, ""); return err }},
		{"expire bad tenant", store.ErrBadTenant, func() error { _, err := s.ExpireSessions(ctx, "", time.Now(), 1); return err }},
		{"fence bad tenant", store.ErrBadTenant, func() error { _, err := s.Fence(ctx, ""); return err }},
		{"negative retained limit", store.ErrBadLimits, func() error {
			_, err := s.ApplyBatch(ctx, "t1", store.Batch{Epoch: epoch, Limits: store.Limits{RetainedBytes: -1}})
			return err
		}},
	} {
		if err := tc.call(); !errors.Is(err, tc.err) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
		}
	}
	if n, _ := s.CountSessions(ctx, "t1"); n != 0 {
		t.Fatalf("count %d after refused saves", n)
	}
}

// testSessionIsolation ensures sessions of one tenant are invisible to
// another and DeleteTenant drops a tenant's sessions.
func testSessionIsolation(t *testing.T, s store.Store) {
	ctx := context.Background()
	saveSession(t, s, "ta", &store.Session{ClientID: "c", ExpiryInterval: 1}, store.Limits{})
	saveSession(t, s, "tb", &store.Session{ClientID: "c", ExpiryInterval: 2}, store.Limits{})
	if got, err := s.LoadSession(ctx, "ta", "c"); err != nil || got.ExpiryInterval != 1 {
		t.Fatalf("ta: %+v %v", got, err)
	}
	if err := s.DeleteTenant(ctx, "tb"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadSession(ctx, "tb", "c"); !errors.Is(err, store.ErrNoSession) {
		t.Fatalf("tb after DeleteTenant: %v", err)
	}
	if n, _ := s.CountSessions(ctx, "tb"); n != 0 {
		t.Fatalf("tb count %d", n)
	}
	if got, err := s.LoadSession(ctx, "ta", "c"); err != nil || got.ExpiryInterval != 1 {
		t.Fatalf("ta after deleting tb: %+v %v", got, err)
	}
}

// testSessionConcurrentUpdates ensures racing read-modify-write cycles never
// lose an update: each retry on ErrConflict sees the other's write.
func testSessionConcurrentUpdates(t *testing.T, s store.Store) {
	ctx := context.Background()
	saveSession(t, s, "t1", &store.Session{ClientID: "c"}, store.Limits{})
	const writers, each = 4, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Go(func() {
			for range each {
				for {
					cur, err := s.LoadSession(ctx, "t1", "c")
					if err != nil {
						errs <- err
						return
					}
					cur.Delivered.Seq++
					err = s.SaveSession(ctx, "t1", cur, store.Limits{})
					if err == nil {
						break
					}
					if !errors.Is(err, store.ErrConflict) {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := s.LoadSession(ctx, "t1", "c")
	if err != nil || got.Delivered.Seq != writers*each {
		t.Fatalf("delivered %d after %d increments: %v", got.Delivered.Seq, writers*each, err)
	}
}

// testSessionWillDueAtSessionEnd ensures a disconnected session whose
// expiry comes before its will delay is due at its expiry: the will goes
// when the delay passes or the session ends, whichever is first
// [MQTT-3.1.3-9].
func testSessionWillDueAtSessionEnd(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now()
	will := &store.Will{Topic: "w", Delay: time.Hour}
	saveSession(t, s, "t1", &store.Session{ClientID: "ends-first", ExpiryInterval: 3, DisconnectedAt: now, Will: will}, store.Limits{})
	saveSession(t, s, "t1", &store.Session{ClientID: "ended", DisconnectedAt: now, Will: will}, store.Limits{})
	saveSession(t, s, "t1", &store.Session{ClientID: "delay-first", ExpiryInterval: 7200, DisconnectedAt: now, Will: will}, store.Limits{})
	for _, tc := range []struct {
		at   time.Time
		want []string
	}{
		{now.Add(-time.Second), nil},
		{now, []string{"ended"}},
		{now.Add(3 * time.Second), []string{"ended", "ends-first"}},
		{now.Add(59 * time.Minute), []string{"ended", "ends-first"}},
		{now.Add(time.Hour), []string{"ended", "ends-first", "delay-first"}},
	} {
		due, err := s.DueSessions(ctx, "t1", tc.at, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range due {
			got = append(got, d.ClientID)
		}
		if !slices.Equal(got, tc.want) {
			t.Fatalf("due at now%+v: %v, want %v", tc.at.Sub(now), got, tc.want)
		}
	}
}
