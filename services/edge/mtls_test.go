package edge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge"
)

// TestMQTTClientCertificateIdentity ensures a client certificate registered
// as a tenant's mTLS identity authenticates an MQTT-over-TLS client into
// that tenant with the identity's capabilities, while a client with an
// unknown certificate and no other credential is refused (CONNACK 0x87).
func TestMQTTClientCertificateIdentity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src, err := tenant.NewEtcd(testserver.EtcdClient(t, testserver.Etcd(t)), tenant.EtcdConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Put(ctx, tenant.Tenant{ID: "acme"}); err != nil {
		t.Fatal(err)
	}
	known, unknown := clientCert(t, "device-1"), clientCert(t, "intruder")
	fp := sha256.Sum256(known.Certificate[0])
	if _, err := src.CreateMTLSIdentity(ctx, tenant.MTLSIdentity{ID: authz.NewID(), Tenant: "acme",
		FingerprintSHA256: hex.EncodeToString(fp[:]),
		Capabilities:      authz.Capabilities{{Filter: "devices/#", Actions: authz.Publish | authz.Subscribe}}}); err != nil {
		t.Fatal(err)
	}

	certFile, keyFile, pool := selfSigned(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	start(t, edge.Config{MQTTTLSAddr: addr, TLS: edge.TLSConfig{CertFile: certFile, KeyFile: keyFile}},
		edge.WithTenants(src, nil))

	connect := func(cert tls.Certificate, id string) (*paho.Client, *paho.Connack, error) {
		var conn net.Conn
		var err error
		for ctx.Err() == nil {
			if conn, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond) // the listener opens right after start returns
		}
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: conn})
		ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
		return c, ca, err
	}
	c, ca, err := connect(known, "device-1")
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("known certificate refused: %v %+v", err, ca)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if pr, err := c.Publish(ctx, &paho.Publish{Topic: "devices/1/state", QoS: 1, Payload: []byte("on")}); err != nil || pr.ReasonCode != 0 {
		t.Fatalf("publish within capabilities: %v %+v", err, pr)
	}
	if pr, _ := c.Publish(ctx, &paho.Publish{Topic: "other", QoS: 1, Payload: []byte("x")}); pr == nil || pr.ReasonCode != 0x87 {
		t.Fatalf("publish outside capabilities: %+v, want PUBACK 0x87", pr)
	}
	_, ca, _ = connect(unknown, "intruder")
	if ca == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("unknown certificate: CONNACK %+v, want 0x87", ca)
	}
}

// clientCert makes a self-signed client certificate.
func clientCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
