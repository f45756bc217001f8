package limits

import "time"

// bucket is a token bucket holding up to one second of its rate. It may go
// into debt: a take is allowed while the bucket holds at least what is
// asked or is full, so a message larger than a second's worth of bytes
// still passes once and is paid back before the next one. Not safe for
// concurrent use; the owner locks.
type bucket struct {
	rate   float64 // tokens per second; 0 means unlimited
	tokens float64
	at     time.Time
}

// setRate applies a (possibly new) limit. A lowered limit holds at once:
// tokens above the new burst are dropped.
func (b *bucket) setRate(rate int64, now time.Time) {
	r := float64(rate)
	if r == b.rate {
		return
	}
	if b.rate == 0 {
		b.tokens, b.at = r, now // from unlimited: start full
	}
	b.rate = r
	b.tokens = min(b.tokens, r)
}

// level returns the tokens at now.
func (b *bucket) level(now time.Time) float64 {
	return min(b.rate, b.tokens+now.Sub(b.at).Seconds()*b.rate)
}

// allows reports whether n tokens may be taken at now.
func (b *bucket) allows(n float64, now time.Time) bool {
	if b.rate == 0 {
		return true
	}
	return b.level(now) >= min(n, b.rate)
}

// take takes n tokens at now (allows must have said yes).
func (b *bucket) take(n float64, now time.Time) {
	if b.rate == 0 {
		return
	}
	b.tokens = b.level(now) - n
	b.at = now
}
