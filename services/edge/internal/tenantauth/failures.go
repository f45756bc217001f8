package tenantauth

import (
	"sync"
	"time"
)

// failureLimiter counts failed authentication attempts per key (a source
// address, a key id) in token buckets: each attempt takes a token before
// any verification work (take), a success gives it back (refund), tokens
// come back at rate per second up to burst, and a key without a token is
// refused. Taking the token before the check, not after, bounds
// concurrent attempts too: a burst of simultaneous guesses cannot all pass
// the check while the first ones are still being hashed.
//
// The map is bounded: when it holds max keys, buckets that have refilled
// (which carry no information) are dropped, and if that is not enough,
// arbitrary ones — a flood of fresh addresses can then cost an attacker's
// older addresses their debt, never admit more than one attempt each.
type failureLimiter struct {
	rate  float64 // tokens per second
	burst float64
	max   int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newFailureLimiter(rate float64, burst, max int) *failureLimiter {
	return &failureLimiter{rate: rate, burst: float64(burst), max: max, buckets: map[string]*bucket{}}
}

// level returns b's tokens at now.
func (l *failureLimiter) level(b *bucket, now time.Time) float64 {
	return min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
}

// take takes a token from key's bucket for an attempt, or reports, if it
// has none, how long until it has.
func (l *failureLimiter) take(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	t := l.level(b, now)
	if t < 1 {
		return false, time.Duration((1 - t) / l.rate * float64(time.Second))
	}
	b.tokens, b.at = t-1, now
	return true, 0
}

// refund gives back the token of an attempt that did not fail; a bucket
// full again carries no information and is dropped.
func (l *failureLimiter) refund(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		return
	}
	b.tokens, b.at = min(l.burst, l.level(b, now)+1), now
	if b.tokens >= l.burst {
		delete(l.buckets, key)
	}
}

// evict makes room: refilled buckets first, then arbitrary ones until a
// quarter of the map is free, so that eviction is rare and amortized.
func (l *failureLimiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if l.level(b, now) >= l.burst {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < l.max*3/4 {
			break
		}
		delete(l.buckets, k)
	}
}

// len returns the number of tracked keys.
func (l *failureLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
