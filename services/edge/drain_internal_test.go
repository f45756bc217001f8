package edge

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

// TestSpread ensures the leave times of a drain fall within the window,
// one in each of n equal slots, so that they are spread out.
func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		n      int
		window time.Duration
	}{{0, time.Second}, {1, time.Second}, {7, 10 * time.Second}, {1000, 10 * time.Second}, {3, 0}} {
		at := spread(tc.n, tc.window)
		if len(at) != tc.n {
			t.Fatalf("spread(%d): %d delays", tc.n, len(at))
		}
		slices.Sort(at)
		slot := tc.window / time.Duration(max(tc.n, 1))
		for i, d := range at {
			if d < time.Duration(i)*slot || d > time.Duration(i+1)*slot {
				t.Errorf("spread(%d, %v): delay %d is %v, outside its slot [%v, %v]", tc.n, tc.window, i, d,
					time.Duration(i)*slot, time.Duration(i+1)*slot)
			}
		}
	}
}

// TestDrainConfigValidate ensures bad drain settings are refused and the
// defaults hold.
func TestDrainConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  DrainConfig
		ok   bool
	}{
		{"defaults", DrainConfig{}, true},
		{"negative timeout", DrainConfig{Timeout: -time.Second}, false},
		{"retry range reversed", DrainConfig{RetryMin: 2 * time.Second, RetryMax: time.Second}, false},
		{"negative retry", DrainConfig{RetryMin: -time.Second}, false},
		{"retry min above the default max", DrainConfig{RetryMin: 5 * time.Second}, true},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v", tc.name, err)
		}
	}
	if d := (DrainConfig{}).WithDefaults(); d.Timeout != DefaultDrainTimeout || d.RetryMin <= 0 || d.RetryMax < d.RetryMin {
		t.Errorf("defaults %+v", d)
	}
}

// TestGateRefusesWhileDraining ensures requests reaching a draining edge
// are answered 503 with Retry-After and a JSON error, /healthz aside.
func TestGateRefusesWhileDraining(t *testing.T) {
	var s Server
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := s.gate(next)
	serve := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w
	}
	if w := serve("/sse?topic=a"); w.Code != http.StatusNoContent {
		t.Fatalf("before the drain: %d", w.Code)
	}
	s.drain.started.Store(true)
	for _, path := range []string{"/sse?topic=a", "/ws", "/mqtt", "/publish", "/poll?topic=a"} {
		w := serve(path)
		var body struct{ Error struct{ Code string } }
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" ||
			json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Error.Code == "" {
			t.Errorf("%s while draining: %d %q %s", path, w.Code, w.Header().Get("Retry-After"), w.Body)
		}
	}
	if w := serve("/healthz"); w.Code != http.StatusNoContent {
		t.Errorf("/healthz while draining: %d", w.Code)
	}
}
