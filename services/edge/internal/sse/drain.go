package sse

import (
	"context"
	"strconv"
	"time"
)

// Leavers returns, per stream open now, a function that ends it for a
// drain, with tail() as its last data (see EndStreams); a drain calls them
// spread over time, so that clients do not all reconnect at once.
func (h *Handler) Leavers(tail func() []byte) []func(context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	leave := make([]func(context.Context), 0, len(h.streams))
	for s := range h.streams {
		leave = append(leave, func(context.Context) {
			var t []byte
			if tail != nil {
				t = tail()
			}
			s.end(t)
		})
	}
	return leave
}

// RetryField returns a "retry:" field of d in milliseconds, as a complete
// event block: EventSource waits that long before it reconnects.
func RetryField(d time.Duration) []byte {
	b := append([]byte("retry: "), strconv.FormatInt(d.Milliseconds(), 10)...)
	return append(b, "\n\n"...)
}

// Open returns the number of streams open.
func (h *Handler) Open() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.streams)
}
