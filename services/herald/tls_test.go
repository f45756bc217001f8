package herald_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/pkg/tlsconf"
	"github.com/heraldmq/herald/services/herald"
	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// plainRefused reports whether addr refuses a plain-text HTTP request: the
// request fails, or is answered with anything but 200 (Go's TLS server
// answers a plain request with 400).
func plainRefused(addr, path string) bool {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return true
	}
	resp.Body.Close()
	return resp.StatusCode != http.StatusOK
}

// TestEmbeddedListenersOverTLS ensures every listener of the all-in-one
// takes a certificate — the edge's HTTP and MQTT/TLS, the admin API, the
// ops port, and the NATS and etcd listeners — serves TLS with it, and
// refuses plain text on each; client CAs on the ops port and NATS turn
// away a client without a certificate.
func TestEmbeddedListenersOverTLS(t *testing.T) {
	pki := testserver.NewPKI(t)
	files := tlsconf.Files{Cert: pki.ServerCert, Key: pki.ServerKey}
	mutual := tlsconf.Files{Cert: pki.ServerCert, Key: pki.ServerKey, ClientCA: pki.CA}
	a := freeAddrs(t, 3)
	mqttTLS := a[2]
	withCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLS()}}
	e := runEmbeddedWith(t, a[0], a[1], func(c *herald.Config) {
		c.Edge.TLS.CertFile, c.Edge.TLS.KeyFile = pki.ServerCert, pki.ServerKey
		c.Edge.MQTTTLSAddr = mqttTLS
		c.Admin.TLS = files
		c.OpsTLS = mutual
		c.NATSTLS = mutual
		c.EtcdTLS = tlsconf.CertFiles{Cert: pki.ServerCert, Key: pki.ServerKey}
	}, withCert, "https")

	// HTTP listeners: TLS works, plain text does not.
	for name, url := range map[string]string{"edge": "https://" + e.http + "/healthz", "admin": "https://" + e.admin + "/healthz",
		"ops": "https://" + e.ops + "/healthz"} {
		resp, err := withCert.Get(url)
		if err != nil {
			t.Fatalf("%s over TLS: %v", name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s over TLS: %s", name, resp.Status)
		}
	}
	for name, addr := range map[string]string{"edge": e.http, "admin": e.admin, "ops": e.ops} {
		if !plainRefused(addr, "/healthz") {
			t.Errorf("%s answered a plain-text request", name)
		}
	}
	withoutCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.TLS()}}
	if resp, err := withoutCert.Get("https://" + e.ops + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("ops answered a client without a certificate")
	}

	// MQTT over TLS: the handshake completes with the certificate.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", mqttTLS, pki.TLS())
	if err != nil {
		t.Fatalf("MQTT/TLS handshake: %v", err)
	}
	conn.Close()

	// NATS: TLS with a client certificate and the password; plain text,
	// or TLS without a certificate, is refused.
	pw := password(t, e.dataDir, herald.NATSPasswordFile)
	nc, err := nats.Connect("tls://"+e.nats, nats.UserInfo(herald.NATSUser, pw), nats.Secure(pki.ClientTLS()))
	if err != nil {
		t.Fatalf("NATS over TLS: %v", err)
	}
	nc.Close()
	for name, opts := range map[string][]nats.Option{
		"plain text":            {nats.UserInfo(herald.NATSUser, pw)},
		"without a certificate": {nats.UserInfo(herald.NATSUser, pw), nats.Secure(pki.TLS())},
	} {
		if nc, err := nats.Connect("nats://"+e.nats, append(opts, nats.Timeout(3*time.Second), nats.NoReconnect())...); err == nil {
			nc.Close()
			t.Errorf("NATS %s: connected", name)
		}
	}

	// etcd: TLS and the root password; plain text is refused.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	etcdPW := password(t, e.dataDir, herald.EtcdPasswordFile)
	dial := func(tc *tls.Config) (*clientv3.Client, error) {
		return clientv3.New(clientv3.Config{Endpoints: []string{e.etcd}, DialTimeout: 3 * time.Second, TLS: tc,
			Username: herald.EtcdUser, Password: etcdPW, Logger: zap.NewNop()})
	}
	root, err := dial(pki.TLS())
	if err != nil {
		t.Fatalf("etcd over TLS: %v", err)
	}
	defer root.Close()
	if got, err := root.Get(ctx, "/herald/tenants/dev"); err != nil || len(got.Kvs) != 1 {
		t.Fatalf("etcd over TLS as root: %v %v", got, err)
	}
	if plain, err := dial(nil); err == nil {
		defer plain.Close()
		gctx, gcancel := context.WithTimeout(ctx, 3*time.Second)
		defer gcancel()
		if _, err := plain.Get(gctx, "/herald/tenants/dev"); err == nil {
			t.Error("etcd answered in plain text")
		}
	}
	if strings.Contains(e.log.String(), etcdPW) {
		t.Error("the etcd password is in the log")
	}
}

// TestEmbeddedTLSConfig ensures half a TLS configuration of the
// all-in-one's own listeners is refused before anything starts.
func TestEmbeddedTLSConfig(t *testing.T) {
	pki := testserver.NewPKI(t)
	files := tlsconf.Files{Cert: pki.ServerCert, Key: pki.ServerKey}
	for name, c := range map[string]herald.Config{
		"ops cert without key":      {OpsTLS: tlsconf.Files{Cert: pki.ServerCert}},
		"nats tls without listener": {NATSTLS: files},
		"etcd tls without listener": {EtcdTLS: tlsconf.CertFiles{Cert: pki.ServerCert, Key: pki.ServerKey}},
		"etcd key without cert":     {EtcdAddr: "127.0.0.1:0", EtcdTLS: tlsconf.CertFiles{Key: pki.ServerKey}},
	} {
		c.DataDir = t.TempDir()
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
