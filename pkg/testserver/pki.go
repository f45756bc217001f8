package testserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a test certificate authority and the PEM files it issued, in a
// temporary directory of the test: a server certificate for localhost,
// 127.0.0.1 and ::1, and a client certificate. Listeners take the files
// (--tls-cert ServerCert --tls-key ServerKey --tls-client-ca CA); clients
// TLS, ClientTLS or the files.
type PKI struct {
	CA                    string // the CA's certificate
	ServerCert, ServerKey string
	ClientCert, ClientKey string

	pool   *x509.CertPool
	client tls.Certificate
}

// NewPKI makes a CA and the certificates it signs for one test.
func NewPKI(tb testing.TB) *PKI {
	tb.Helper()
	dir := tb.TempDir()
	caKey, caDER := issue(tb, &x509.Certificate{Subject: pkix.Name{CommonName: "Herald test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatal(err)
	}
	p := &PKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.CA = writePEM(tb, dir, "ca.crt", "CERTIFICATE", caDER)
	serverKey, serverDER := issue(tb, localhostTemplate(), ca, caKey)
	p.ServerCert = writePEM(tb, dir, "server.crt", "CERTIFICATE", serverDER)
	p.ServerKey = writePEM(tb, dir, "server.key", "EC PRIVATE KEY", marshalKey(tb, serverKey))
	clientKey, clientDER := issue(tb, &x509.Certificate{Subject: pkix.Name{CommonName: "herald-test-client"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, caKey)
	p.ClientCert = writePEM(tb, dir, "client.crt", "CERTIFICATE", clientDER)
	p.ClientKey = writePEM(tb, dir, "client.key", "EC PRIVATE KEY", marshalKey(tb, clientKey))
	p.client = tls.Certificate{Certificate: [][]byte{clientDER}, PrivateKey: clientKey}
	return p
}

// TLS is a client configuration that trusts the CA and presents no
// certificate.
func (p *PKI) TLS() *tls.Config { return &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12} }

// ClientTLS is TLS presenting the client certificate.
func (p *PKI) ClientTLS() *tls.Config {
	c := p.TLS()
	c.Certificates = []tls.Certificate{p.client}
	return c
}

// localhostTemplate is a server certificate's for localhost, 127.0.0.1 and
// ::1.
func localhostTemplate() *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
}

// issue makes a P-256 key and the certificate of tmpl for it, valid until
// tmpl.NotAfter (a day when it is unset), signed by parent (self-signed
// when parent is nil).
func issue(tb testing.TB, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	return key, der
}

func marshalKey(tb testing.TB, key *ecdsa.PrivateKey) []byte {
	tb.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

func writePEM(tb testing.TB, dir, name, typ string, der []byte) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}
