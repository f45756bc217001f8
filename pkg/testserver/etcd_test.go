package testserver

import "testing"

// TestEtcd ensures Etcd serves a client that can write and read back.
func TestEtcd(t *testing.T) {
	cli := EtcdClient(t, Etcd(t))
	if _, err := cli.Put(t.Context(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(t.Context(), "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get: %v %v", resp, err)
	}
}
