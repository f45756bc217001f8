package testserver

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
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
	key, der := issue(tb, localhostTemplate(), nil, nil)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	return srv, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// LocalhostCertFiles writes a self-signed certificate for localhost,
// 127.0.0.1 and ::1 — ECDSA P-256, valid for validity (at most 14 days
// for a browser's serverCertificateHashes) — and its key to PEM files in
// a temporary directory, and returns them with a pool trusting it.
func LocalhostCertFiles(tb testing.TB, validity time.Duration) (certFile, keyFile string, pool *x509.CertPool) {
	tb.Helper()
	tmpl := localhostTemplate()
	tmpl.NotAfter = time.Now().Add(validity)
	key, der := issue(tb, tmpl, nil, nil)
	dir := tb.TempDir()
	certFile = writePEM(tb, dir, "cert.pem", "CERTIFICATE", der)
	keyFile = writePEM(tb, dir, "key.pem", "EC PRIVATE KEY", marshalKey(tb, key))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
