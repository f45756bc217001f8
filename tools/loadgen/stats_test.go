package main

import "testing"

// TestReceiverCountsDuplicatesAndLoss ensures a receiver counts each
// (publisher, sequence) once, flags repeats as duplicates, and reads back
// the stamp the publisher wrote.
func TestReceiverCountsDuplicatesAndLoss(t *testing.T) {
	r := newReceiver()
	p := make([]byte, 32)
	for _, seq := range []uint32{1, 2, 2, 3, 70, 70} {
		stamp(p, 7, seq)
		r.record(p)
	}
	stamp(p, 8, 1)
	r.record(p)
	r.record([]byte("short"))
	if r.received != 5 || r.dups != 2 {
		t.Fatalf("received %d dups %d, want 5 and 2", r.received, r.dups)
	}
	_, pub, seq, ok := unstamp(p)
	if !ok || pub != 8 || seq != 1 {
		t.Fatalf("unstamp: %d %d %v", pub, seq, ok)
	}
}

// TestLoopbackOnly ensures load can only target 127.0.0.0/8.
func TestLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:1883": true, "127.3.2.1:80": true, "localhost:1": true,
		"10.0.0.1:1883": false, "192.168.1.1:80": false, "8.8.8.8:53": false} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%s) = %v", addr, err)
		}
	}
}
