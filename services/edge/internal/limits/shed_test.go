package limits

import (
	"errors"
	"math"
	"runtime/debug"
	"testing"
	"time"
)

// TestShedderConnections ensures the Shedder refuses the connection past
// MaxConnections with a BusyError wrapping ErrServerBusy, and admits again
// once a slot is released (released once, however often release is called).
func TestShedderConnections(t *testing.T) {
	s, err := NewShedder(ShedConfig{MaxConnections: 3, RetryAfter: 7 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var releases []func()
	for i := range 3 {
		r, err := s.Admit()
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		releases = append(releases, r)
	}
	_, err = s.Admit()
	if !errors.Is(err, ErrServerBusy) || RetryAfter(err) != 7*time.Second {
		t.Fatalf("4th connection: err %v, retry after %v; want ErrServerBusy, 7s", err, RetryAfter(err))
	}
	if got := s.Connections(); got != 3 {
		t.Fatalf("Connections = %d after a refusal, want 3", got)
	}
	releases[0]()
	releases[0]()
	if got := s.Connections(); got != 2 {
		t.Fatalf("Connections = %d after a double release, want 2", got)
	}
	if _, err := s.Admit(); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := s.Admit(); !errors.Is(err, ErrServerBusy) {
		t.Fatalf("full again: err %v, want ErrServerBusy", err)
	}
}

// TestShedderMemory ensures the Shedder refuses new connections while the
// heap is over MemoryLimit, whatever the connection count, and admits
// again once it is back under (read at most every heapSampleEvery).
func TestShedderMemory(t *testing.T) {
	s, err := NewShedder(ShedConfig{MemoryLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	heap := uint64(500)
	now := time.Unix(0, 0)
	s.heap = func() uint64 { return heap }
	s.now = func() time.Time { return now }
	s.heapAt.Store(math.MinInt64 / 2)
	if _, err := s.Admit(); err != nil {
		t.Fatalf("under the limit: %v", err)
	}
	heap = 1500
	if _, err := s.Admit(); err != nil {
		t.Fatalf("within the sample period the cached size holds: %v", err)
	}
	now = now.Add(heapSampleEvery)
	_, err = s.Admit()
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Why != "memory" || busy.RetryAfter != DefaultShedRetryAfter {
		t.Fatalf("over the limit: err %v, want a memory BusyError with the default retry", err)
	}
	heap = 900
	now = now.Add(heapSampleEvery)
	if _, err := s.Admit(); err != nil {
		t.Fatalf("back under the limit: %v", err)
	}
}

// TestShedderGoMemLimit ensures that without MemoryLimit the bound is
// MemoryFraction of the runtime's memory limit (GOMEMLIMIT), and none
// when the runtime has none.
func TestShedderGoMemLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	debug.SetMemoryLimit(math.MaxInt64)
	s, err := NewShedder(ShedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.MemoryLimit(); got != 0 {
		t.Fatalf("no GOMEMLIMIT: memory limit %d, want none", got)
	}
	debug.SetMemoryLimit(1 << 30)
	s, err = NewShedder(ShedConfig{MemoryFraction: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.MemoryLimit(); got != 1<<29 {
		t.Fatalf("GOMEMLIMIT 1 GiB at 0.5: memory limit %d, want %d", got, 1<<29)
	}
	// The real heap is read: a limit of one byte refuses.
	s, err = NewShedder(ShedConfig{MemoryLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admit(); !errors.Is(err, ErrServerBusy) {
		t.Fatalf("1-byte limit: err %v, want ErrServerBusy", err)
	}
}

// TestShedConfigValidate ensures invalid shed configurations are refused.
func TestShedConfigValidate(t *testing.T) {
	for _, c := range []ShedConfig{{MaxConnections: -1}, {MemoryLimit: -1}, {MemoryFraction: 1.5}, {RetryAfter: -time.Second}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: valid, want an error", c)
		}
	}
	var nilShed *Shedder
	if r, err := nilShed.Admit(); err != nil || r == nil {
		t.Fatalf("nil Shedder: %v", err)
	}
}
