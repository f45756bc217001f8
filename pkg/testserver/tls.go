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
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// LocalhostTLS returns an https test server on 127.0.0.1 whose
// certificate, self-signed, names localhost, 127.0.0.1 and ::1, so that
// clients may reach it by name (the host name resolving to loopback) as
// well as by address; and that certificate in PEM, for a client's
// RootCAs or SSL_CERT_FILE. httptest.NewTLSServer's own certificate names
// no localhost. The server is closed at the end of the test.
func LocalhostTLS(tb testing.TB, h http.Handler) (*httptest.Server, []byte) {
	tb.Helper()
	der, key := localhostCert(tb, 24*time.Hour)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	return srv, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// localhostCert returns a self-signed ECDSA P-256 certificate (DER) for
// localhost, 127.0.0.1 and ::1, valid from an hour ago for validity, and
// its key.
func localhostCert(tb testing.TB, validity time.Duration) ([]byte, *ecdsa.PrivateKey) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return der, key
}

// LocalhostCertFiles writes a self-signed certificate for localhost,
// 127.0.0.1 and ::1 — ECDSA P-256, valid for validity (at most 14 days
// for a browser's serverCertificateHashes) — and its key to PEM files in
// a temporary directory, and returns them with a pool trusting it.
func LocalhostCertFiles(tb testing.TB, validity time.Duration) (certFile, keyFile string, pool *x509.CertPool) {
	tb.Helper()
	der, key := localhostCert(tb, validity)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
