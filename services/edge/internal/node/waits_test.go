package node

import (
	"testing"
	"time"
)

// TestWaitShareWindows ensures a tenant's share of the dispatcher's waits
// runs out within its window (an overrun counted), comes back whole in the
// next, is the tenant's own, and that ended windows are swept out.
func TestWaitShareWindows(t *testing.T) {
	w := newWaits(2 * time.Second) // a share of 200 ms per second
	t0 := time.Now()
	if got := w.left("a", t0); got != 200*time.Millisecond {
		t.Fatalf("a fresh window leaves %s", got)
	}
	w.spend("a", 150*time.Millisecond, true)
	w.spend("a", time.Second, false) // not crowded: not charged
	if got := w.left("a", t0.Add(500*time.Millisecond)); got != 50*time.Millisecond {
		t.Fatalf("after 150 ms, %s left", got)
	}
	if got := w.left("b", t0.Add(500*time.Millisecond)); got != 200*time.Millisecond {
		t.Fatalf("another tenant's window leaves %s", got)
	}
	w.spend("a", 60*time.Millisecond, true)
	if got := w.left("a", t0.Add(600*time.Millisecond)); got != 0 {
		t.Fatalf("a spent share leaves %s", got)
	}
	if got := w.left("a", t0.Add(time.Second)); got != 200*time.Millisecond {
		t.Fatalf("the next window leaves %s", got)
	}
	st := w.stats
	if st.Overruns != 1 || st.MostInWindow != 210*time.Millisecond || st.Waited != 1210*time.Millisecond {
		t.Fatalf("stats %+v", st)
	}
	w.left("c", t0.Add(3*time.Second))
	if _, ok := w.tenants["a"]; ok || len(w.tenants) != 1 {
		t.Fatalf("ended windows not swept: %v", w.tenants)
	}
}
