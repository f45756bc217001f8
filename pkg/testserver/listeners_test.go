package testserver

import (
	"net"
	"path/filepath"
	"slices"
	"testing"
)

// TestListeners ensures the process's TCP (IPv4 and IPv6) and unix
// listening sockets are listed while open and gone once closed.
func TestListeners(t *testing.T) {
	before := Listeners(t)
	var ls []net.Listener
	var want []string
	for _, network := range []string{"tcp4", "tcp6"} {
		l, err := net.Listen(network, map[string]string{"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0"}[network])
		if err != nil {
			t.Logf("%s: %v", network, err) // a machine without IPv6
			continue
		}
		ls = append(ls, l)
		want = append(want, "tcp "+l.Addr().String())
	}
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ls = append(ls, l)
	want = append(want, "unix "+sock)
	// A connected client socket is not a listener.
	c, err := net.Dial("tcp", ls[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	got := Listeners(t)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s not listed: %v", w, got)
		}
	}
	if len(got) != len(before)+len(want) {
		t.Errorf("listed %v, want %v plus %v", got, before, want)
	}
	for _, l := range ls {
		l.Close()
	}
	if got := Listeners(t); !slices.Equal(got, before) {
		t.Errorf("after close: %v, want %v", got, before)
	}
}
