package webtransport

import "testing"

// TestConfigValidate ensures the listener is off by default, needs TLS —
// its own certificate or the edge's — and a valid address.
func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      Config
		edgeTLS  bool
		wantFail bool
	}{
		{"off", Config{}, false, false},
		{"edge tls", Config{Addr: "127.0.0.1:8443"}, true, false},
		{"own cert", Config{Addr: "127.0.0.1:8443", CertFile: "c", KeyFile: "k"}, false, false},
		{"no tls", Config{Addr: "127.0.0.1:8443"}, false, true},
		{"cert without key", Config{Addr: "127.0.0.1:8443", CertFile: "c"}, true, true},
		{"bad addr", Config{Addr: "nowhere"}, true, true},
		{"cert without addr", Config{CertFile: "c", KeyFile: "k"}, true, true},
	} {
		if err := tc.cfg.Validate(tc.edgeTLS); (err != nil) != tc.wantFail {
			t.Errorf("%s: Validate = %v, want failure %v", tc.name, err, tc.wantFail)
		}
	}
}
