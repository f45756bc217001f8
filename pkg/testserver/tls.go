package testserver

import (
	"crypto/tls"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"testing"
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
