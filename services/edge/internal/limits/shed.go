package limits

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of ShedConfig.
const (
	// DefaultMemoryFraction is the share of GOMEMLIMIT past which new
	// connections are refused when no MemoryLimit is set: the headroom
	// left serves the connections already admitted, which keep growing
	// (queues, in-flight publishes) while the garbage collector works
	// harder near the limit.
	DefaultMemoryFraction = 0.8
	// DefaultShedRetryAfter is what a refused client is told to wait.
	DefaultShedRetryAfter = 5 * time.Second
	// heapSampleEvery bounds how often the heap size is read: a storm of
	// connections reads a cached figure at most this old.
	heapSampleEvery = 50 * time.Millisecond
)

// ShedConfig configures load shedding: the refusal of new connections,
// whatever their tenant, before the edge runs out of memory. Connections
// already admitted are never closed by it. The edge's flags map onto it:
// --max-connections, --memory-limit.
type ShedConfig struct {
	// MaxConnections bounds the connections of the edge (MQTT, SSE,
	// WebSocket, long polls), all tenants together; 0 means no bound.
	MaxConnections int `name:"max-connections" env:"HERALD_MAX_CONNECTIONS" placeholder:"N" help:"Most client connections of this edge, all tenants; more are refused as server busy (MQTT 0x89, HTTP 503, WebSocket 1013); 0: no bound."`
	// MemoryLimit, in bytes, is the heap size (live and not yet swept
	// objects, runtime/metrics /memory/classes/heap/objects:bytes) past
	// which new connections are refused. 0 means MemoryFraction of the
	// Go runtime's memory limit (GOMEMLIMIT) when one is set, else no
	// memory bound.
	MemoryLimit int64 `name:"memory-limit" env:"HERALD_MEMORY_LIMIT" placeholder:"BYTES" help:"Heap bytes past which new connections are refused as server busy (0: 0.8 of GOMEMLIMIT if set, else none)."`
	// MemoryFraction applies to GOMEMLIMIT when MemoryLimit is 0;
	// default DefaultMemoryFraction.
	MemoryFraction float64 `name:"memory-fraction" env:"HERALD_MEMORY_FRACTION" placeholder:"FRACTION" help:"Share of GOMEMLIMIT past which new connections are refused when --memory-limit is 0 (default 0.8)."`
	// RetryAfter is the wait a refused client is told (HTTP Retry-After);
	// default DefaultShedRetryAfter.
	RetryAfter time.Duration `name:"shed-retry-after" env:"HERALD_SHED_RETRY_AFTER" help:"The wait a client refused as server busy is told (HTTP Retry-After; default 5s)."`
}

// Validate reports a configuration error.
func (c ShedConfig) Validate() error {
	switch {
	case c.MaxConnections < 0, c.MemoryLimit < 0, c.RetryAfter < 0:
		return errors.New("limits: shed: negative limit")
	case c.MemoryFraction < 0 || c.MemoryFraction > 1:
		return fmt.Errorf("limits: shed: memory_fraction %v is not within [0, 1]", c.MemoryFraction)
	}
	return nil
}

// BusyError is the error of a connection refused by a Shedder: it wraps
// ErrServerBusy and says when to retry.
type BusyError struct {
	// Why names the bound that was reached: "connections" or "memory".
	Why        string
	RetryAfter time.Duration
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("%v: %s, retry in %v", ErrServerBusy, e.Why, e.RetryAfter)
}

// Unwrap returns ErrServerBusy.
func (e *BusyError) Unwrap() error { return ErrServerBusy }

// RetryAfter returns how long a client refused with err should wait, or 0
// if err is not a BusyError.
func RetryAfter(err error) time.Duration {
	if e, ok := errors.AsType[*BusyError](err); ok {
		return e.RetryAfter
	}
	return 0
}

// Shedder admits new connections while the edge has room for them. Safe
// for concurrent use; the nil Shedder admits everything.
type Shedder struct {
	maxConns int64
	memLimit uint64 // 0: none
	retry    time.Duration
	heap     func() uint64

	conns atomic.Int64

	mu       sync.Mutex // serializes heap reads
	heapAt   atomic.Int64
	heapSize atomic.Uint64
	now      func() time.Time
}

// NewShedder returns a Shedder for cfg.
func NewShedder(cfg ShedConfig) (*Shedder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MemoryFraction == 0 {
		cfg.MemoryFraction = DefaultMemoryFraction
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = DefaultShedRetryAfter
	}
	s := &Shedder{maxConns: int64(cfg.MaxConnections), retry: cfg.RetryAfter, heap: heapObjects, now: time.Now}
	switch {
	case cfg.MemoryLimit > 0:
		s.memLimit = uint64(cfg.MemoryLimit)
	default:
		// debug.SetMemoryLimit with a negative value only reads it;
		// math.MaxInt64 means GOMEMLIMIT is not set.
		if goLimit := debug.SetMemoryLimit(-1); goLimit != math.MaxInt64 && goLimit > 0 {
			s.memLimit = uint64(float64(goLimit) * cfg.MemoryFraction)
		}
	}
	return s, nil
}

// MemoryLimit returns the heap size past which connections are refused, 0
// for none.
func (s *Shedder) MemoryLimit() uint64 {
	if s == nil {
		return 0
	}
	return s.memLimit
}

// Connections returns the connections admitted and not released.
func (s *Shedder) Connections() int64 {
	if s == nil {
		return 0
	}
	return s.conns.Load()
}

// Admit takes a connection slot, or refuses with a *BusyError (wrapping
// ErrServerBusy) when the edge holds MaxConnections or its heap is over
// the memory limit. release, to be called once when the connection ends,
// frees the slot.
func (s *Shedder) Admit() (release func(), err error) {
	if s == nil {
		return func() {}, nil
	}
	if s.memLimit > 0 && s.heapBytes() > s.memLimit {
		return nil, &BusyError{Why: "memory", RetryAfter: s.retry}
	}
	if n := s.conns.Add(1); s.maxConns > 0 && n > s.maxConns {
		s.conns.Add(-1)
		return nil, &BusyError{Why: "connections", RetryAfter: s.retry}
	}
	var once sync.Once
	return func() { once.Do(func() { s.conns.Add(-1) }) }, nil
}

// heapBytes returns the heap size, read at most every heapSampleEvery.
func (s *Shedder) heapBytes() uint64 {
	now := s.now().UnixNano()
	if now-s.heapAt.Load() < int64(heapSampleEvery) {
		return s.heapSize.Load()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now-s.heapAt.Load() >= int64(heapSampleEvery) {
		s.heapSize.Store(s.heap())
		s.heapAt.Store(now)
	}
	return s.heapSize.Load()
}

// heapMetric is the runtime metric the memory bound compares: the memory
// held by heap objects, live or not yet swept, which is what connections
// and their queues grow.
const heapMetric = "/memory/classes/heap/objects:bytes"

func heapObjects() uint64 {
	sample := []metrics.Sample{{Name: heapMetric}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return sample[0].Value.Uint64()
}
