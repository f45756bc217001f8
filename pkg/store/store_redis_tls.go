package store

import "crypto/tls"

// RedisTLSConfig is the TLS configuration of a Redis client that speaks TLS
// (enabled), or nil for plain TCP. The server is verified against the
// system CAs, which SSL_CERT_FILE and SSL_CERT_DIR extend with a private CA;
// the server name is each node's host, so a Redis Cluster's nodes each need
// a certificate for the address they announce.
func RedisTLSConfig(enabled bool) *tls.Config {
	if !enabled {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12}
}
