package k8s

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// enableEtcdAuth turns on etcd's authentication with a user that may only
// read and write under Herald's prefix (/herald/), as an operator would
// before giving Herald the etcd-username and etcd-password of the
// credentials Secret. It reaches etcd through kubectl port-forward.
func enableEtcdAuth(t *testing.T, c *cluster, namespace string, pki *testPKI, user, password string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	pf := exec.Command("kubectl", "-n", namespace, "port-forward", "svc/etcd", fmt.Sprintf("%d:2379", port))
	pf.Env = c.env
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = pf.Process.Kill()
		_ = pf.Wait()
	}()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{fmt.Sprintf("https://127.0.0.1:%d", port)}, DialTimeout: 5 * time.Second,
		TLS: &tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The port-forward takes a moment to listen.
	for {
		sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Status(sctx, cli.Endpoints()[0])
		scancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("etcd through port-forward: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"add root", func() error { _, err := cli.UserAdd(ctx, "root", randomHex(t)); return err }},
		{"root role", func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err }},
		{"add role herald", func() error { _, err := cli.RoleAdd(ctx, user); return err }},
		{"grant /herald/", func() error {
			_, err := cli.RoleGrantPermission(ctx, user, "/herald/", clientv3.GetPrefixRangeEnd("/herald/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}},
		{"add user", func() error { _, err := cli.UserAdd(ctx, user, password); return err }},
		{"user role", func() error { _, err := cli.UserGrantRole(ctx, user, user); return err }},
		{"enable auth", func() error { _, err := cli.AuthEnable(ctx); return err }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("etcd auth: %s: %v", s.what, err)
		}
	}
	t.Logf("etcd in %s: authentication on, user %s limited to /herald/", namespace, user)
}
