package k8s

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testPKI is the certificates the README's Secrets are made from, written
// into dir under the names the README uses: messaging-ca.crt (the CA of
// NATS, Redis and etcd, which also signs their deps.crt and the edges'
// realtime.crt), client-ca.crt.
type testPKI struct {
	pool *x509.CertPool // trusts messaging-ca.crt
}

func newPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	ca, caKey := newCA(t, "herald-test messaging CA")
	write(t, dir, "messaging-ca.crt", "CERTIFICATE", ca.Raw)
	var sans []string
	for _, svc := range []string{"nats", "redis", "etcd"} {
		sans = append(sans, svc, svc+".messaging-deps", svc+".messaging-deps.svc", svc+".messaging-deps.svc.cluster.local")
	}
	// 127.0.0.1: the test reaches etcd through kubectl port-forward.
	leaf(t, dir, "deps", ca, caKey, sans, net.IPv4(127, 0, 0, 1))
	leaf(t, dir, "realtime", ca, caKey, []string{"realtime.example.com"})
	clientCA, _ := newCA(t, "herald-test client CA")
	write(t, dir, "client-ca.crt", "CERTIFICATE", clientCA.Raw)
	p := &testPKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	return p
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// leaf writes NAME.crt and NAME.key: a server certificate for names and ips.
func leaf(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string, ips ...net.IP) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, IPAddresses: ips, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, name+".crt", "CERTIFICATE", der)
	write(t, dir, name+".key", "PRIVATE KEY", keyDER)
}

func write(t *testing.T, dir, name, blockType string, der []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// randomHex is a fresh password.
func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
