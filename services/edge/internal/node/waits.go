package node

import (
	"sync"
	"time"
)

// The edge's dispatcher is one goroutine for every tenant of the edge: a
// delivery that waits for room in a feed (waitRoomLocked) holds every
// other tenant's live messages behind it. So, while another tenant has
// subscribers on the edge, each tenant has a share of the dispatcher's
// time it may spend waiting on its feeds: waits.share in each
// waits.window (SlowAfter/10 in every SlowAfter/2: 200 ms a second by
// default). Once a tenant's share of the window is spent, its full feeds
// apply their own overflow policy, as a slow feed does, until the window
// ends: its publishers are still pressed, but another tenant's deliveries
// wait on it no longer. A window is a tenant's own, started by the first
// wait after the last one ended; a wait counts in the window it began in
// and is cut at the share left (a timer: it may overrun by the timer's
// lateness).
//
// The share is a fraction of SlowAfter, not a setting of its own: it is the
// same trade that SlowAfter sets — how long a subscriber that keeps up may
// hold the edge to spare its messages — scaled to what one tenant may
// cost the others: one tenant's subscribers hold the others' deliveries
// for a fifth of the time at most, and a tenant whose fast subscribers are
// merely behind the dispatcher keeps room to wait for their writers.
const (
	waitWindowDivisor = 2
	waitShareDivisor  = 10
)

// WaitStats are the edge dispatcher's waits for room in full feeds, since
// the node started.
type WaitStats struct {
	// Waited is the time deliveries waited for room in full feeds.
	Waited time.Duration
	// MostInWindow is the most one tenant waited in one of its windows
	// while another tenant had subscribers on the edge: at most its share,
	// but for a timer's lateness.
	MostInWindow time.Duration
	// Stalls counts the feeds judged slow because their writer took
	// nothing for the stall bound while a delivery waited on them.
	Stalls uint64
	// Overruns counts the deliveries that did not wait for room because
	// their tenant's share of the window was spent: their feed's overflow
	// policy applied.
	Overruns uint64
}

// waits is the edge's accounting of its dispatcher's waits, per tenant.
type waits struct {
	window, share time.Duration

	mu      sync.Mutex
	tenants map[string]*tenantWaits
	swept   time.Time // when ended windows were last swept out
	stats   WaitStats
}

// tenantWaits is one tenant's current window: since start, spent waiting.
type tenantWaits struct {
	start time.Time
	spent time.Duration
}

func newWaits(slowAfter time.Duration) waits {
	return waits{window: slowAfter / waitWindowDivisor, share: slowAfter / waitShareDivisor}
}

// left returns how long deliveries may still wait on tenant's feeds in
// its current window, as of now; 0 (counted as an overrun) when its share
// is spent.
func (w *waits) left(tenant string, now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Sub(w.swept) >= w.window {
		// Ended windows go, so that a tenant that waited once costs no
		// memory for ever (a deleted one included).
		for id, t := range w.tenants {
			if now.Sub(t.start) >= w.window {
				delete(w.tenants, id)
			}
		}
		w.swept = now
	}
	t := w.tenants[tenant]
	if t == nil || now.Sub(t.start) >= w.window {
		if w.tenants == nil {
			w.tenants = map[string]*tenantWaits{}
		}
		t = &tenantWaits{start: now}
		w.tenants[tenant] = t
	}
	if t.spent >= w.share {
		w.stats.Overruns++
		return 0
	}
	return w.share - t.spent
}

// spend counts d waited on tenant's feeds, in its current window if
// crowded (another tenant waited behind).
func (w *waits) spend(tenant string, d time.Duration, crowded bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.Waited += d
	t := w.tenants[tenant]
	if t == nil || !crowded {
		return
	}
	t.spent += d
	w.stats.MostInWindow = max(w.stats.MostInWindow, t.spent)
}

// stalled counts a feed judged slow for a stall.
func (w *waits) stalled() {
	w.mu.Lock()
	w.stats.Stalls++
	w.mu.Unlock()
}

// Waits returns the edge dispatcher's waits for room so far.
func (n *Node) Waits() WaitStats {
	n.waits.mu.Lock()
	defer n.waits.mu.Unlock()
	return n.waits.stats
}
