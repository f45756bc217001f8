// Package tlsconf turns the certificate files a listener is given into its
// server TLS configuration, the same way for every Herald listener: the
// edge's HTTP and MQTT/TLS listeners, the admin API, and the all-in-one's
// ops port and its NATS and etcd listeners.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Files names a listener's certificate and key (PEM) and, optionally, the
// CAs that client certificates are verified against. The kong tags make
// them the flags --<prefix>cert, --<prefix>key and --<prefix>client-ca of
// the struct that embeds Files (with prefix "tls-" or "admin-tls-"), the
// environment variables <envprefix>TLS_CERT, TLS_KEY, TLS_CLIENT_CA and
// the YAML keys of the flags' names.
type Files struct {
	Cert     string `name:"cert" type:"path" placeholder:"PATH" env:"TLS_CERT" help:"PEM certificate (chain): serve this listener over TLS 1.2 or newer; needs the key too."`
	Key      string `name:"key" type:"path" placeholder:"PATH" env:"TLS_KEY" help:"PEM private key of the certificate."`
	ClientCA string `name:"client-ca" type:"path" placeholder:"PATH" env:"TLS_CLIENT_CA" help:"PEM CAs: clients must present a certificate signed by one of them (mutual TLS)."`
}

// Enabled reports whether TLS is asked for.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" }

// CertFiles is Files for a listener whose clients authenticate otherwise
// (by password), which takes no client CAs: the flags --<prefix>cert and
// --<prefix>key only.
type CertFiles struct {
	Cert string `name:"cert" type:"path" placeholder:"PATH" env:"TLS_CERT" help:"PEM certificate (chain): serve this listener over TLS 1.2 or newer; needs the key too."`
	Key  string `name:"key" type:"path" placeholder:"PATH" env:"TLS_KEY" help:"PEM private key of the certificate."`
}

// Files is c as Files, without client CAs.
func (c CertFiles) Files() Files { return Files{Cert: c.Cert, Key: c.Key} }

// Validate reports files given without their pair: a certificate without
// its key, or client CAs without a certificate to serve TLS with.
func (f Files) Validate() error {
	switch {
	case (f.Cert == "") != (f.Key == ""):
		return errors.New("tls: the certificate and its key go together")
	case f.ClientCA != "" && f.Cert == "":
		return errors.New("tls: client CAs need a certificate and key to serve TLS with")
	}
	return nil
}

// Server returns the server TLS configuration of f, nil when f asks for no
// TLS. With client CAs, clients' certificates are verified against them
// under policy withCA (tls.RequireAndVerifyClientCert where a certificate is
// the door, tls.VerifyClientCertIfGiven where it is one credential among
// others); without, under withoutCA (tls.NoClientCert, or
// tls.RequestClientCert to see certificates the caller checks itself).
func (f Files) Server(withCA, withoutCA tls.ClientAuthType) (*tls.Config, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if !f.Enabled() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, ClientAuth: withoutCA}
	if f.ClientCA != "" {
		pool, err := Pool(f.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, withCA
	}
	return cfg, nil
}

// Pool reads the PEM certificates of file into a pool; a file with none is
// an error.
func Pool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no certificate in " + file)
	}
	return pool, nil
}
