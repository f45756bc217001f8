package edge_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldmq/herald/services/edge"
)

// TestTLSDowngradeRefused ensures the TLS listeners (HTTPS and MQTT over
// TLS) refuse a client that offers only TLS 1.0 or 1.1 (the handshake
// fails: minimum version 1.2), accept TLS 1.2 and 1.3, and answer a
// plaintext HTTP request on the HTTPS port with 400 rather than serve it.
func TestTLSDowngradeRefused(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mqttTLS := l.Addr().String()
	l.Close()
	httpsAddr := start(t, edge.Config{AnonymousTenant: "dev", MQTTTLSAddr: mqttTLS,
		TLS: edge.TLSConfig{CertFile: certFile, KeyFile: keyFile}})
	for _, addr := range []string{httpsAddr, mqttTLS} {
		for _, v := range []struct {
			name string
			ver  uint16
			ok   bool
		}{{"TLS 1.0", tls.VersionTLS10, false}, {"TLS 1.1", tls.VersionTLS11, false},
			{"TLS 1.2", tls.VersionTLS12, true}, {"TLS 1.3", tls.VersionTLS13, true}} {
			t.Run(addr+" "+v.name, func(t *testing.T) {
				var c *tls.Conn
				var err error
				deadline := time.Now().Add(10 * time.Second)
				for {
					d := &net.Dialer{Timeout: 5 * time.Second}
					c, err = tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, MinVersion: v.ver, MaxVersion: v.ver})
					// The MQTT TLS listener opens right after start returns.
					if !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if v.ok {
					if err != nil {
						t.Fatalf("handshake: %v", err)
					}
					c.Close()
					return
				}
				if err == nil {
					c.Close()
					t.Fatalf("handshake at %s succeeded", v.name)
				}
				if !strings.Contains(err.Error(), "protocol version") {
					t.Fatalf("handshake failed, but not on the version: %v", err)
				}
			})
		}
	}
	t.Run("plaintext HTTP on the HTTPS port", func(t *testing.T) {
		c, err := net.Dial("tcp", httpsAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write([]byte("GET /sse?topic=a HTTP/1.1\r\nHost: x\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return // closed without an answer: refused too
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plaintext request answered %s, want 400", resp.Status)
		}
	})
}
