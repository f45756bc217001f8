// Package storetest is the conformance suite every store.Store
// implementation runs: the guarantees documented on store.Store, as tests.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
)

// Run runs the conformance suite. open returns an empty store private to the
// (sub)test; the suite closes it. Subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"ZeroState", testZeroState},
		{"Idempotent", testIdempotent},
		{"RetainedLifecycle", testRetainedLifecycle},
		{"RetainedWildcards", testRetainedWildcards},
		{"RetainedExpired", testRetainedExpired},
		{"RetainedIndexMatches", testRetainedIndexMatches},
		{"RetainedIndexLifecycle", testRetainedIndexLifecycle},
		{"RoundTrip", testRoundTrip},
		{"ReplayPaging", testReplayPaging},
		{"TrimByCount", testTrimByCount},
		{"TrimByAge", testTrimByAge},
		{"EpochChange", testEpochChange},
		{"TenantIsolation", testTenantIsolation},
		{"DeleteTenant", testDeleteTenant},
		{"InvalidArguments", testInvalidArguments},
		{"ConcurrentReaders", testConcurrentReaders},
		{"Fencing", testFencing},
		{"StateLost", testStateLost},
		{"SkipThrough", testSkipThrough},
		{"RetainedLimits", testRetainedLimits},
		{"RetainedSweep", testRetainedSweep},
		{"EpochChangeKeepsSessions", testEpochChangeKeepsSessions},
		{"SessionRoundTrip", testSessionRoundTrip},
		{"SessionRevisions", testSessionRevisions},
		{"SessionLimit", testSessionLimit},
		{"SessionPaging", testSessionPaging},
		{"SessionExpiry", testSessionExpiry},
		{"SessionDue", testSessionDue},
		{"SessionWillDueAtSessionEnd", testSessionWillDueAtSessionEnd},
		{"SessionInvalid", testSessionInvalid},
		{"SessionIsolation", testSessionIsolation},
		{"SessionConcurrentUpdates", testSessionConcurrentUpdates},
		{"SessionEdges", testSessionEdges},
		{"EdgeLeases", testEdgeLeases},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

const epoch = "e1"

// msg returns a plain message stored now.
func msg(seq uint64, topic, payload string) *message.Message {
	return &message.Message{Topic: topic, Payload: []byte(payload), Seq: seq, Time: time.Now()}
}

// retained returns a Retain message; an empty payload deletes.
func retained(seq uint64, topic, payload string) *message.Message {
	m := msg(seq, topic, payload)
	m.Retain = true
	return m
}

// seqRange returns plain messages first..last on topic "r".
func seqRange(first, last uint64) []*message.Message {
	var out []*message.Message
	for s := first; s <= last; s++ {
		out = append(out, msg(s, "r", fmt.Sprint(s)))
	}
	return out
}

func apply(t *testing.T, s store.Store, tenant, ep string, lim store.ReplayLimits, msgs ...*message.Message) {
	t.Helper()
	if err := s.Apply(context.Background(), tenant, ep, msgs, lim); err != nil {
		t.Fatalf("Apply(%s, %s, %d msgs): %v", tenant, ep, len(msgs), err)
	}
}

func seqs(msgs []*message.Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

func span(first, last uint64) []uint64 {
	out := []uint64{}
	for s := first; s <= last; s++ {
		out = append(out, s)
	}
	return out
}

// replay reads one page.
func replay(t *testing.T, s store.Store, tenant string, after uint64, max int) store.ReplayPage {
	t.Helper()
	p, err := s.Replay(context.Background(), tenant, after, max)
	if err != nil {
		t.Fatalf("Replay(%s, %d, %d): %v", tenant, after, max, err)
	}
	return p
}

func retainedTopics(t *testing.T, s store.Store, tenant, filter string) []string {
	t.Helper()
	ms, err := s.Retained(context.Background(), tenant, filter)
	if err != nil {
		t.Fatalf("Retained(%s, %q): %v", tenant, filter, err)
	}
	out := []string{}
	for _, m := range ms {
		if m.Tenant != tenant {
			t.Errorf("Retained(%s) returned a message of tenant %q", tenant, m.Tenant)
		}
		out = append(out, m.Topic)
	}
	return out
}

func retainedPayload(t *testing.T, s store.Store, tenant, name string) (string, bool) {
	t.Helper()
	ms, err := s.Retained(context.Background(), tenant, name)
	if err != nil {
		t.Fatalf("Retained(%s, %q): %v", tenant, name, err)
	}
	switch len(ms) {
	case 0:
		return "", false
	case 1:
		return string(ms[0].Payload), true
	}
	t.Fatalf("Retained(%s, %q) returned %d messages for one topic", tenant, name, len(ms))
	return "", false
}

func wantState(t *testing.T, s store.Store, tenant string, want store.ReplayState) {
	t.Helper()
	got, err := s.State(context.Background(), tenant)
	if err != nil {
		t.Fatalf("State(%s): %v", tenant, err)
	}
	if got != want {
		t.Fatalf("State(%s) = %+v, want %+v", tenant, got, want)
	}
}

// testZeroState ensures a tenant never applied reads as empty, not as an error.
func testZeroState(t *testing.T, s store.Store) {
	wantState(t, s, "t1", store.ReplayState{})
	if p := replay(t, s, "t1", 0, 10); len(p.Messages) != 0 || p.ReplayState != (store.ReplayState{}) {
		t.Fatalf("Replay of unknown tenant = %+v", p)
	}
	if got := retainedTopics(t, s, "t1", "#"); len(got) != 0 {
		t.Fatalf("Retained of unknown tenant = %v", got)
	}
}

// testIdempotent ensures re-applying the same batch, or an overlapping one,
// changes nothing that was applied already and adds only the new messages.
func testIdempotent(t *testing.T, s store.Store) {
	lim := store.ReplayLimits{}
	batch := append(seqRange(1, 4), retained(5, "a", "v5"))
	apply(t, s, "t1", epoch, lim, batch...)
	apply(t, s, "t1", epoch, lim, batch...)
	wantState(t, s, "t1", store.ReplayState{Epoch: epoch, Applied: 5})
	if got := seqs(replay(t, s, "t1", 0, 100).Messages); !slices.Equal(got, span(1, 5)) {
		t.Fatalf("after re-apply: replay %v", got)
	}
	// Overlap: 3..8, where 5 now carries another retained payload. The
	// copy already applied must win, as the stream cannot change it.
	overlap := append(seqRange(3, 4), retained(5, "a", "other"), msg(6, "r", "6"), retained(7, "b", "v7"), msg(8, "r", "8"))
	apply(t, s, "t1", epoch, lim, overlap...)
	wantState(t, s, "t1", store.ReplayState{Epoch: epoch, Applied: 8})
	p := replay(t, s, "t1", 0, 100)
	if got := seqs(p.Messages); !slices.Equal(got, span(1, 8)) {
		t.Fatalf("after overlap: replay %v", got)
	}
	if string(p.Messages[4].Payload) != "v5" {
		t.Fatalf("seq 5 re-applied: payload %q", p.Messages[4].Payload)
	}
	if v, _ := retainedPayload(t, s, "t1", "a"); v != "v5" {
		t.Fatalf("retained a = %q, want v5", v)
	}
	if got := retainedTopics(t, s, "t1", "#"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("retained topics %v", got)
	}
	// An old batch alone is a no-op.
	apply(t, s, "t1", epoch, lim, seqRange(1, 2)...)
	wantState(t, s, "t1", store.ReplayState{Epoch: epoch, Applied: 8})
}

// testRetainedLifecycle ensures a Retain message sets and replaces its topic's
// retained message, an empty payload deletes it, a non-retained message leaves
// it alone, and an older update never overwrites a newer one.
func testRetainedLifecycle(t *testing.T, s store.Store) {
	lim := store.ReplayLimits{}
	steps := []struct {
		msgs    []*message.Message
		want    string
		present bool
	}{
		{[]*message.Message{retained(1, "a/b", "x")}, "x", true},
		{[]*message.Message{retained(2, "a/b", "y")}, "y", true},
		{[]*message.Message{msg(3, "a/b", "not retained")}, "y", true},
		{[]*message.Message{retained(4, "a/b", ""), retained(5, "c", "other topic")}, "", false},
		{[]*message.Message{retained(6, "a/b", "z"), retained(7, "a/b", "w")}, "w", true},
		{[]*message.Message{retained(8, "a/b", "v"), retained(9, "a/b", "")}, "", false},
		// Older updates: re-applied after newer ones, they must not win.
		{[]*message.Message{retained(1, "a/b", "x"), retained(6, "a/b", "z")}, "", false},
		{[]*message.Message{retained(10, "a/b", "u")}, "u", true},
		{[]*message.Message{retained(2, "a/b", "y"), retained(4, "a/b", "")}, "u", true},
	}
	for i, st := range steps {
		apply(t, s, "t1", epoch, lim, st.msgs...)
		got, ok := retainedPayload(t, s, "t1", "a/b")
		if got != st.want || ok != st.present {
			t.Fatalf("step %d: retained a/b = %q (present %v), want %q (present %v)", i, got, ok, st.want, st.present)
		}
	}
	if v, _ := retainedPayload(t, s, "t1", "c"); v != "other topic" {
		t.Fatalf("retained c = %q", v)
	}
	if got := seqs(replay(t, s, "t1", 0, 100).Messages); !slices.Equal(got, span(1, 10)) {
		t.Fatalf("replay %v: retained updates belong in the buffer too", got)
	}
}

// testRetainedWildcards ensures wildcard filters match per MQTT, leading
// wildcards skip $-topics, and results come sorted by topic.
func testRetainedWildcards(t *testing.T, s store.Store) {
	names := []string{"b", "a/c", "a", "$SYS/x", "a/b/c", "a/b", "$SYS", "x/a/b", "a//b"}
	var msgs []*message.Message
	for i, n := range names {
		msgs = append(msgs, retained(uint64(i+1), n, "p-"+n))
	}
	apply(t, s, "t1", epoch, store.ReplayLimits{}, msgs...)
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"#", []string{"a", "a//b", "a/b", "a/b/c", "a/c", "b", "x/a/b"}},
		{"+", []string{"a", "b"}},
		{"a/+", []string{"a/b", "a/c"}},
		{"a/#", []string{"a", "a//b", "a/b", "a/b/c", "a/c"}},
		{"a/+/c", []string{"a/b/c"}},
		{"a/+/b", []string{"a//b"}},
		{"+/b", []string{"a/b"}},
		{"+/+/b", []string{"a//b", "x/a/b"}},
		{"+/x", []string{}},
		{"$SYS/#", []string{"$SYS", "$SYS/x"}},
		{"$SYS/+", []string{"$SYS/x"}},
		{"a/b", []string{"a/b"}},
		{"$SYS", []string{"$SYS"}},
		{"nope", []string{}},
		{"nope/#", []string{}},
	} {
		if got := retainedTopics(t, s, "t1", tc.filter); !slices.Equal(got, tc.want) {
			t.Errorf("Retained(%q) = %v, want %v", tc.filter, got, tc.want)
		}
	}
}

// testRetainedExpired ensures an expired retained message is never returned,
// by exact topic or wildcard, while unexpired ones are.
func testRetainedExpired(t *testing.T, s store.Store) {
	old := retained(1, "a/old", "x")
	old.ExpiresAt = time.Now().Add(-time.Second)
	live := retained(2, "a/live", "y")
	live.ExpiresAt = time.Now().Add(time.Hour)
	soon := retained(3, "a/soon", "z")
	soon.ExpiresAt = time.Now().Add(300 * time.Millisecond)
	apply(t, s, "t1", epoch, store.ReplayLimits{}, old, live, soon)
	if got := retainedTopics(t, s, "t1", "a/+"); !slices.Equal(got, []string{"a/live", "a/soon"}) {
		t.Fatalf("Retained(a/+) = %v", got)
	}
	if _, ok := retainedPayload(t, s, "t1", "a/old"); ok {
		t.Fatal("expired retained a/old returned by exact topic")
	}
	time.Sleep(400 * time.Millisecond)
	if got := retainedTopics(t, s, "t1", "#"); !slices.Equal(got, []string{"a/live"}) {
		t.Fatalf("Retained(#) after a/soon expired = %v", got)
	}
}

// testRoundTrip ensures a stored message keeps every field and reads back
// with its tenant set.
func testRoundTrip(t *testing.T, s store.Store) {
	in := &message.Message{Tenant: "t1", Topic: "a/b", Payload: []byte{0, 1, 0xff}, QoS: 1, Retain: true,
		ContentType: "x/y", PayloadUTF8: true, ResponseTopic: "r", CorrelationData: []byte("c"),
		UserProperties: []message.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}},
		ExpiresAt:      time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond), Origin: "e/c", Seq: 1,
		Time: time.Now().UTC().Truncate(time.Millisecond)}
	apply(t, s, "t1", epoch, store.ReplayLimits{}, in)
	check := func(where string, got *message.Message) {
		t.Helper()
		if got.Tenant != "t1" || got.Topic != in.Topic || string(got.Payload) != string(in.Payload) || got.QoS != 1 ||
			!got.Retain || got.ContentType != in.ContentType || !got.PayloadUTF8 || got.ResponseTopic != "r" ||
			string(got.CorrelationData) != "c" || !slices.Equal(got.UserProperties, in.UserProperties) ||
			!got.ExpiresAt.Equal(in.ExpiresAt) || got.Origin != "e/c" || got.Seq != 1 || !got.Time.Equal(in.Time) {
			t.Fatalf("%s: %+v, want %+v", where, got, in)
		}
	}
	p := replay(t, s, "t1", 0, 1)
	if len(p.Messages) != 1 {
		t.Fatalf("replay %v", seqs(p.Messages))
	}
	check("replay", p.Messages[0])
	ms, err := s.Retained(context.Background(), "t1", "a/b")
	if err != nil || len(ms) != 1 {
		t.Fatalf("Retained: %d, %v", len(ms), err)
	}
	check("retained", ms[0])
}

// testReplayPaging ensures Replay after N returns exactly the messages with
// Seq > N in order, and that paging with max walks the buffer without gaps
// or repeats.
func testReplayPaging(t *testing.T, s store.Store) {
	apply(t, s, "t1", epoch, store.ReplayLimits{}, seqRange(1, 10)...)
	apply(t, s, "t1", epoch, store.ReplayLimits{}, seqRange(11, 23)...)
	for _, tc := range []struct {
		after uint64
		max   int
		want  []uint64
	}{
		{0, 100, span(1, 23)},
		{7, 100, span(8, 23)},
		{7, 3, span(8, 10)},
		{22, 100, []uint64{23}},
		{23, 100, []uint64{}},
		{1000, 100, []uint64{}},
		{0, 0, span(1, 23)}, // max <= 0: the default page
	} {
		p := replay(t, s, "t1", tc.after, tc.max)
		if got := seqs(p.Messages); !slices.Equal(got, tc.want) {
			t.Errorf("Replay(after %d, max %d) = %v, want %v", tc.after, tc.max, got, tc.want)
		}
		if p.ReplayState != (store.ReplayState{Epoch: epoch, Applied: 23}) {
			t.Errorf("Replay state %+v", p.ReplayState)
		}
	}
	var got []uint64
	for after := uint64(0); ; {
		p := replay(t, s, "t1", after, 5)
		if len(p.Messages) == 0 {
			break
		}
		got = append(got, seqs(p.Messages)...)
		after = p.Messages[len(p.Messages)-1].Seq
	}
	if !slices.Equal(got, span(1, 23)) {
		t.Fatalf("paged replay %v", got)
	}
}

// testTrimByCount ensures the buffer keeps the newest MaxMessages messages and
// TrimmedThrough names the newest one dropped.
func testTrimByCount(t *testing.T, s store.Store) {
	lim := store.ReplayLimits{MaxMessages: 10}
	apply(t, s, "t1", epoch, lim, seqRange(1, 8)...)
	wantState(t, s, "t1", store.ReplayState{Epoch: epoch, Applied: 8})
	apply(t, s, "t1", epoch, lim, seqRange(9, 25)...)
	p := replay(t, s, "t1", 0, 100)
	if got := seqs(p.Messages); !slices.Equal(got, span(16, 25)) {
		t.Fatalf("replay %v", got)
	}
	if p.ReplayState != (store.ReplayState{Epoch: epoch, Applied: 25, TrimmedThrough: 15}) {
		t.Fatalf("state %+v", p.ReplayState)
	}
	// A smaller limit later trims further; a larger one brings nothing back.
	apply(t, s, "t1", epoch, store.ReplayLimits{MaxMessages: 3}, msg(26, "r", ""))
	apply(t, s, "t1", epoch, store.ReplayLimits{MaxMessages: 100}, msg(27, "r", ""))
	p = replay(t, s, "t1", 0, 100)
	if got := seqs(p.Messages); !slices.Equal(got, span(24, 27)) || p.TrimmedThrough != 23 {
		t.Fatalf("replay %v, state %+v", got, p.ReplayState)
	}
	// Retained messages are not subject to replay limits.
	apply(t, s, "t1", epoch, store.ReplayLimits{MaxMessages: 1}, append([]*message.Message{retained(28, "keep", "k")}, seqRange(29, 40)...)...)
	if v, ok := retainedPayload(t, s, "t1", "keep"); !ok || v != "k" {
		t.Fatalf("retained trimmed with the buffer: %q %v", v, ok)
	}
	if got := seqs(replay(t, s, "t1", 0, 100).Messages); !slices.Equal(got, []uint64{40}) {
		t.Fatalf("replay %v", got)
	}
}

// testTrimByAge ensures messages older than MaxAge leave the buffer as a
// prefix (an old message behind a young one stays), and that a message
// without a Time never ages out.
func testTrimByAge(t *testing.T, s store.Store) {
	lim := store.ReplayLimits{MaxAge: time.Hour}
	aged := func(seq uint64, age time.Duration) *message.Message {
		m := msg(seq, "r", "")
		m.Time = time.Now().Add(-age)
		return m
	}
	apply(t, s, "t1", epoch, lim, aged(1, 3*time.Hour), aged(2, 2*time.Hour), aged(3, 2*time.Hour), aged(4, time.Minute), aged(5, 2*time.Hour), aged(6, 0))
	p := replay(t, s, "t1", 0, 100)
	if got := seqs(p.Messages); !slices.Equal(got, span(4, 6)) {
		t.Fatalf("replay %v", got)
	}
	if p.ReplayState != (store.ReplayState{Epoch: epoch, Applied: 6, TrimmedThrough: 3}) {
		t.Fatalf("state %+v", p.ReplayState)
	}
	// Once 4 is old too, 4 and 5 go. An empty batch trims as well.
	apply(t, s, "t1", epoch, store.ReplayLimits{MaxAge: 30 * time.Second})
	p = replay(t, s, "t1", 0, 100)
	if got := seqs(p.Messages); !slices.Equal(got, []uint64{6}) || p.TrimmedThrough != 5 {
		t.Fatalf("replay %v, state %+v", got, p.ReplayState)
	}
	untimed := msg(7, "r", "")
	untimed.Time = time.Time{}
	apply(t, s, "t1", epoch, store.ReplayLimits{MaxAge: time.Millisecond}, untimed)
	time.Sleep(5 * time.Millisecond)
	apply(t, s, "t1", epoch, store.ReplayLimits{MaxAge: time.Millisecond})
	p = replay(t, s, "t1", 0, 100)
	if got := seqs(p.Messages); !slices.Equal(got, []uint64{7}) || p.TrimmedThrough != 6 {
		t.Fatalf("replay %v, state %+v", got, p.ReplayState)
	}
}

// testEpochChange ensures applying under a new epoch first clears everything
// of the old one: buffer, retained messages and counters.
func testEpochChange(t *testing.T, s store.Store) {
	lim := store.ReplayLimits{MaxMessages: 5}
	apply(t, s, "t1", "old", lim, append(seqRange(1, 9), retained(10, "a", "old"))...)
	wantState(t, s, "t1", store.ReplayState{Epoch: "old", Applied: 10, TrimmedThrough: 5})
	apply(t, s, "t1", "new", lim, msg(1, "r", "n1"), retained(2, "b", "new"))
	p := replay(t, s, "t1", 0, 100)
	if got := seqs(p.Messages); !slices.Equal(got, []uint64{1, 2}) || string(p.Messages[0].Payload) != "n1" {
		t.Fatalf("replay %v", got)
	}
	if p.ReplayState != (store.ReplayState{Epoch: "new", Applied: 2}) {
		t.Fatalf("state %+v", p.ReplayState)
	}
	if got := retainedTopics(t, s, "t1", "#"); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("retained %v", got)
	}
	// An empty batch under another epoch clears too.
	apply(t, s, "t1", "newer", lim)
	wantState(t, s, "t1", store.ReplayState{Epoch: "newer"})
	if got := retainedTopics(t, s, "t1", "#"); len(got) != 0 {
		t.Fatalf("retained %v", got)
	}
}

// testTenantIsolation ensures one tenant never reads another's messages,
// even with a multi-level wildcard, and deleting one leaves the other intact.
func testTenantIsolation(t *testing.T, s store.Store) {
	lim := store.ReplayLimits{}
	apply(t, s, "ta", "ea", lim, retained(1, "x/a", "A"), msg(2, "x/a", "A2"))
	apply(t, s, "tb", "eb", lim, retained(1, "x/b", "B"), msg(2, "x/b", "B2"), msg(3, "x/b", "B3"))
	if got := retainedTopics(t, s, "ta", "#"); !slices.Equal(got, []string{"x/a"}) {
		t.Fatalf("ta # = %v", got)
	}
	if got := retainedTopics(t, s, "tb", "#"); !slices.Equal(got, []string{"x/b"}) {
		t.Fatalf("tb # = %v", got)
	}
	if _, ok := retainedPayload(t, s, "ta", "x/b"); ok {
		t.Fatal("ta sees tb's retained x/b")
	}
	pa := replay(t, s, "ta", 0, 100)
	if len(pa.Messages) != 2 || pa.Epoch != "ea" || pa.Applied != 2 {
		t.Fatalf("ta replay %+v", pa)
	}
	for _, m := range pa.Messages {
		if m.Topic != "x/a" || m.Tenant != "ta" {
			t.Fatalf("ta replay holds %+v", m)
		}
	}
	if err := s.DeleteTenant(context.Background(), "tb"); err != nil {
		t.Fatal(err)
	}
	if got := seqs(replay(t, s, "ta", 0, 100).Messages); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("ta replay after deleting tb: %v", got)
	}
	if got := retainedTopics(t, s, "ta", "#"); !slices.Equal(got, []string{"x/a"}) {
		t.Fatalf("ta # after deleting tb = %v", got)
	}
}

// testDeleteTenant ensures DeleteTenant drops buffer, retained messages,
// state and sessions, is idempotent, fences out the writer that owned the
// tenant (which would otherwise write the deleted state back), and lets a
// new owner start the tenant over from nothing.
func testDeleteTenant(t *testing.T, s store.Store) {
	ctx := context.Background()
	owner, err := s.Fence(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	b := store.Batch{Epoch: epoch, Fence: owner, Messages: append(seqRange(1, 4), retained(5, "a", "v")),
		Limits: store.Limits{Replay: store.ReplayLimits{MaxMessages: 2}}}
	if _, err := s.ApplyBatch(ctx, "t1", b); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSession(ctx, "t1", &store.Session{ClientID: "c"}, store.Limits{}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.DeleteTenant(ctx, "t1"); err != nil {
			t.Fatal(err)
		}
	}
	wantState(t, s, "t1", store.ReplayState{})
	if p := replay(t, s, "t1", 0, 100); len(p.Messages) != 0 {
		t.Fatalf("replay after delete %v", seqs(p.Messages))
	}
	if got := retainedTopics(t, s, "t1", "#"); len(got) != 0 {
		t.Fatalf("retained after delete %v", got)
	}
	if n, err := s.CountSessions(ctx, "t1"); err != nil || n != 0 {
		t.Fatalf("sessions after delete: %d, %v", n, err)
	}
	// The owner from before the deletion, applying what it had fetched
	// (from a fresh start, or where it was), is refused.
	for _, expect := range []uint64{0, 5} {
		stale := b
		stale.Expect = expect
		if _, err := s.ApplyBatch(ctx, "t1", stale); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("stale owner (expect %d) after delete: %v, want ErrFenced", expect, err)
		}
	}
	wantState(t, s, "t1", store.ReplayState{})
	// A new owner starts over.
	fresh, err := s.Fence(ctx, "t1")
	if err != nil || fresh <= owner {
		t.Fatalf("fence after delete = %d, %v; want more than %d", fresh, err, owner)
	}
	if _, err := s.ApplyBatch(ctx, "t1", store.Batch{Epoch: "e2", Fence: fresh, Messages: []*message.Message{msg(1, "r", "")}}); err != nil {
		t.Fatal(err)
	}
	wantState(t, s, "t1", store.ReplayState{Epoch: "e2", Applied: 1})
	if err := s.DeleteTenant(ctx, "never-written"); err != nil {
		t.Fatalf("deleting an unknown tenant: %v", err)
	}
}

// testInvalidArguments ensures malformed calls fail with the documented
// sentinel errors and change nothing.
func testInvalidArguments(t *testing.T, s store.Store) {
	ctx := context.Background()
	lim := store.ReplayLimits{}
	other := msg(1, "r", "")
	other.Tenant = "t2"
	for _, tc := range []struct {
		name string
		err  error
		call func() error
	}{
		{"empty tenant", store.ErrBadTenant, func() error { return s.Apply(ctx, "", epoch, nil, lim) }},
		{"hash tag in tenant", store.ErrBadTenant, func() error { return s.Apply(ctx, "a}b", epoch, nil, lim) }},
		{"message of another tenant", store.ErrBadTenant, func() error { return s.Apply(ctx, "t1", epoch, []*message.Message{other}, lim) }},
		{"empty epoch", store.ErrNoEpoch, func() error { return s.Apply(ctx, "t1", "", nil, lim) }},
		{"descending", store.ErrOutOfOrder, func() error {
			return s.Apply(ctx, "t1", epoch, []*message.Message{msg(2, "r", ""), msg(1, "r", "")}, lim)
		}},
		{"repeated seq", store.ErrOutOfOrder, func() error {
			return s.Apply(ctx, "t1", epoch, []*message.Message{msg(1, "r", ""), msg(1, "r", "")}, lim)
		}},
		{"zero seq", store.ErrOutOfOrder, func() error { return s.Apply(ctx, "t1", epoch, []*message.Message{msg(0, "r", "")}, lim) }},
		{"negative limit", store.ErrBadLimits, func() error {
			return s.Apply(ctx, "t1", epoch, nil, store.ReplayLimits{MaxMessages: -1})
		}},
		{"bad filter", store.ErrBadFilter, func() error { _, err := s.Retained(ctx, "t1", "a/#/b"); return err }},
		{"empty filter", store.ErrBadFilter, func() error { _, err := s.Retained(ctx, "t1", ""); return err }},
		{"replay bad tenant", store.ErrBadTenant, func() error { _, err := s.Replay(ctx, "{x}", 0, 1); return err }},
		{"state bad tenant", store.ErrBadTenant, func() error { _, err := s.State(ctx, ""); return err }},
		{"delete bad tenant", store.ErrBadTenant, func() error { return s.DeleteTenant(ctx, "") }},
	} {
		if err := tc.call(); !errors.Is(err, tc.err) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
		}
	}
	wantState(t, s, "t1", store.ReplayState{})
}

// testConcurrentReaders ensures readers racing with Apply never see a torn
// state: every page holds exactly the buffer (TrimmedThrough, Applied], so
// Applied is never ahead of (or behind) the messages, and retained messages
// never run ahead of Applied.
func testConcurrentReaders(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const batches, size = 150, 4
	lim := store.ReplayLimits{MaxMessages: 10}
	var wg sync.WaitGroup
	var reads atomic.Int64
	errs := make(chan error, 8)
	for range 3 {
		wg.Go(func() {
			for ctx.Err() == nil {
				p, err := s.Replay(ctx, "t1", 0, 1000)
				if err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				reads.Add(1)
				if p.Applied == 0 {
					continue
				}
				want := span(p.TrimmedThrough+1, p.Applied)
				if got := seqs(p.Messages); !slices.Equal(got, want) {
					errs <- fmt.Errorf("torn page: state %+v, messages %v", p.ReplayState, got)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for ctx.Err() == nil {
			before, err := s.State(ctx, "t1")
			if err != nil {
				return
			}
			ms, err := s.Retained(ctx, "t1", "last")
			if err != nil {
				return
			}
			after, err := s.State(ctx, "t1")
			if err != nil {
				return
			}
			// The retained "last" carries the Seq of the batch's last message.
			if len(ms) == 1 && (ms[0].Seq < before.Applied || ms[0].Seq > after.Applied) {
				errs <- fmt.Errorf("retained seq %d outside applied [%d, %d]", ms[0].Seq, before.Applied, after.Applied)
				return
			}
		}
	})
	for b := range uint64(batches) {
		first := b*size + 1
		batch := seqRange(first, first+size-2)
		batch = append(batch, retained(first+size-1, "last", fmt.Sprint(first+size-1)))
		apply(t, s, "t1", epoch, lim, batch...)
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if reads.Load() == 0 {
		t.Error("no read raced with Apply")
	}
	wantState(t, s, "t1", store.ReplayState{Epoch: epoch, Applied: batches * size, TrimmedThrough: batches*size - 10})
}
