package edge

import (
	"encoding/base64"
	"net"
	"net/http"
	"strconv"

	"github.com/heraldmq/herald/services/edge/internal/httpapi"
	"github.com/heraldmq/herald/services/edge/internal/webtransport"
)

// WebTransportInfo is the answer of GET /webtransport: where a page opens
// a WebTransport session, and the hash of the listener's certificate for
// serverCertificateHashes (a self-signed certificate valid 14 days at
// most is then trusted without a CA).
type WebTransportInfo struct {
	// URL is https://<the request's host>:<the listener's port>/wt.
	URL string `json:"url"`
	// CertHash is the SHA-256 of the certificate, base64 (standard).
	CertHash string `json:"cert_hash"`
}

// webTransportInfo answers GET /webtransport: 200 WebTransportInfo, or 404
// not_found when the edge serves no WebTransport — a page falls back to
// the WebSocket protocol then.
func (s *Server) webTransportInfo(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	addr := s.wtAddr
	s.mu.Unlock()
	if s.wt == nil || addr == nil {
		httpapi.WriteJSON(w, http.StatusNotFound, map[string]any{"error": map[string]string{
			"code": "not_found", "message": "this edge serves no WebTransport: use /ws"}})
		return
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	port := strconv.Itoa(addr.(*net.UDPAddr).Port)
	hash := s.wt.CertHash()
	httpapi.WriteJSON(w, http.StatusOK, WebTransportInfo{URL: "https://" + net.JoinHostPort(host, port) + webtransport.Path,
		CertHash: base64.StdEncoding.EncodeToString(hash[:])})
}

// listenWebTransport opens the WebTransport listener's UDP socket, if one
// is configured (nil otherwise).
func (s *Server) listenWebTransport() (net.PacketConn, error) {
	if s.wt == nil {
		return nil, nil
	}
	pc, err := net.ListenPacket("udp", s.cfg.WebTransport.Addr)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.wtAddr = pc.LocalAddr()
	s.mu.Unlock()
	return pc, nil
}

// WebTransportAddr returns the WebTransport listener's address once Run
// listens; nil when the edge serves none.
func (s *Server) WebTransportAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wtAddr
}
