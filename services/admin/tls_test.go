package admin

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/pkg/tlsconf"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// tlsCall lists the tenants over gRPC with the given transport
// credentials and the operator token, and returns the call's error.
func tlsCall(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+operatorToken), 5*time.Second)
	defer cancel()
	_, err = adminv1.NewTenantServiceClient(conn).ListTenants(ctx, &adminv1.ListTenantsRequest{})
	return err
}

// restGet gets /v1/tenants with the operator token through client.
func restGet(client *http.Client, url string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+operatorToken)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// TestTLS ensures an admin API given a certificate serves gRPC (HTTP/2 by
// ALPN) and REST over TLS, and nothing in plain text: a plain gRPC call
// fails and a plain HTTP request is refused.
func TestTLS(t *testing.T) {
	pki := testserver.NewPKI(t)
	f := newFixture(t, Config{TLS: tlsconf.Files{Cert: pki.ServerCert, Key: pki.ServerKey}})

	if err := tlsCall(t, f.addr, credentials.NewTLS(pki.TLS())); err != nil {
		t.Fatalf("gRPC over TLS: %v", err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.TLS(), ForceAttemptHTTP2: true}}
	if code, err := restGet(client, "https://"+f.addr+"/v1/tenants"); err != nil || code != http.StatusOK {
		t.Fatalf("REST over TLS: %d %v", code, err)
	}

	if err := tlsCall(t, f.addr, insecure.NewCredentials()); err == nil {
		t.Fatal("a plain-text gRPC call succeeded against a TLS listener")
	}
	code, err := restGet(&http.Client{Timeout: 5 * time.Second}, "http://"+f.addr+"/v1/tenants")
	if err == nil && code == http.StatusOK {
		t.Fatal("a plain-text REST request succeeded against a TLS listener")
	}
}

// TestMutualTLS ensures an admin API given client CAs accepts only clients
// presenting a certificate they signed, over gRPC and REST alike.
func TestMutualTLS(t *testing.T) {
	pki := testserver.NewPKI(t)
	f := newFixture(t, Config{TLS: tlsconf.Files{Cert: pki.ServerCert, Key: pki.ServerKey, ClientCA: pki.CA}})

	if err := tlsCall(t, f.addr, credentials.NewTLS(pki.ClientTLS())); err != nil {
		t.Fatalf("gRPC with a client certificate: %v", err)
	}
	if err := tlsCall(t, f.addr, credentials.NewTLS(pki.TLS())); err == nil {
		t.Fatal("gRPC without a client certificate succeeded")
	}
	with := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLS()}}
	if code, err := restGet(with, "https://"+f.addr+"/v1/tenants"); err != nil || code != http.StatusOK {
		t.Fatalf("REST with a client certificate: %d %v", code, err)
	}
	without := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.TLS()}}
	if _, err := restGet(without, "https://"+f.addr+"/v1/tenants"); err == nil {
		t.Fatal("REST without a client certificate succeeded")
	}
	// A certificate from another CA is no better than none.
	other := testserver.NewPKI(t).ClientTLS()
	other.RootCAs = pki.TLS().RootCAs
	if err := tlsCall(t, f.addr, credentials.NewTLS(other)); err == nil {
		t.Fatal("gRPC with a certificate of another CA succeeded")
	}
}

// TestTLSConfig ensures half a TLS configuration is refused at New, not
// discovered at the first connection.
func TestTLSConfig(t *testing.T) {
	pki := testserver.NewPKI(t)
	for _, files := range []tlsconf.Files{{Cert: pki.ServerCert}, {Key: pki.ServerKey}, {ClientCA: pki.CA},
		{Cert: pki.ServerCert, Key: pki.CA}, {Cert: pki.ServerCert, Key: pki.ServerKey, ClientCA: pki.ServerKey}} {
		if _, err := New(Config{TLS: files}, &tenant.Etcd{}, nil); err == nil {
			t.Errorf("New accepted %+v", files)
		}
	}
}
