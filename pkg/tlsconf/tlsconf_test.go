package tlsconf_test

import (
	"crypto/tls"
	"testing"

	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/pkg/tlsconf"
)

// TestServer ensures Files gives no TLS when it names no certificate,
// TLS 1.2 or newer with the certificate when it does, the policy asked for
// with or without client CAs, and an error for half a configuration or a
// file that holds no certificate.
func TestServer(t *testing.T) {
	pki := testserver.NewPKI(t)
	if cfg, err := (tlsconf.Files{}).Server(tls.RequireAndVerifyClientCert, tls.NoClientCert); cfg != nil || err != nil {
		t.Fatalf("no files: %v %v", cfg, err)
	}
	cfg, err := tlsconf.Files{Cert: pki.ServerCert, Key: pki.ServerKey}.Server(tls.RequireAndVerifyClientCert, tls.RequestClientCert)
	if err != nil || len(cfg.Certificates) != 1 || cfg.MinVersion != tls.VersionTLS12 || cfg.ClientAuth != tls.RequestClientCert || cfg.ClientCAs != nil {
		t.Fatalf("certificate: %+v %v", cfg, err)
	}
	cfg, err = tlsconf.Files{Cert: pki.ServerCert, Key: pki.ServerKey, ClientCA: pki.CA}.Server(tls.RequireAndVerifyClientCert, tls.NoClientCert)
	if err != nil || cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil {
		t.Fatalf("client CA: %+v %v", cfg, err)
	}
	for name, f := range map[string]tlsconf.Files{
		"cert without key":    {Cert: pki.ServerCert},
		"key without cert":    {Key: pki.ServerKey},
		"client CA alone":     {ClientCA: pki.CA},
		"key not of the cert": {Cert: pki.ServerCert, Key: pki.ClientKey},
		"CA file without CA":  {Cert: pki.ServerCert, Key: pki.ServerKey, ClientCA: pki.ServerKey},
		"missing file":        {Cert: pki.ServerCert + ".missing", Key: pki.ServerKey},
	} {
		if _, err := f.Server(tls.RequireAndVerifyClientCert, tls.NoClientCert); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
