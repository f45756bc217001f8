package testserver_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"testing"

	"github.com/heraldmq/herald/pkg/testserver"
)

// TestLocalhostTLS ensures a client trusting only the returned
// certificate reaches the server by localhost, 127.0.0.1 and its URL, and
// that the certificate is not trusted by default.
func TestLocalhostTLS(t *testing.T) {
	srv, certPEM := testserver.LocalhostTLS(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("no certificate in the PEM")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, host := range []string{"localhost", "127.0.0.1"} {
		resp, err := client.Get("https://" + net.JoinHostPort(host, port) + "/")
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		resp.Body.Close()
	}
	if _, err := http.Get(srv.URL); err == nil {
		t.Fatal("the self-signed certificate was trusted by the default client")
	}
}
