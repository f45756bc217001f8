package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	wt "github.com/quic-go/webtransport-go"
)

// wtTarget opens WebTransport sessions to one edge: the URL and the
// certificate's hash come from its GET /webtransport, and the
// certificate is trusted by that hash, as a browser's
// serverCertificateHashes does.
type wtTarget struct {
	url string
	tr  *wt.Transport
}

var (
	wtMu      sync.Mutex
	wtTargets = map[string]*wtTarget{}
)

// targetWT returns the WebTransport target of the edge at base, asking it
// once.
func targetWT(ctx context.Context, base string) (*wtTarget, error) {
	wtMu.Lock()
	defer wtMu.Unlock()
	if t := wtTargets[base]; t != nil {
		return t, nil
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		// The edge's HTTP listener serves TLS with the same self-signed
		// certificate: the answer is checked against the hash below.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/webtransport", nil)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var info struct {
		URL      string `json:"url"`
		CertHash string `json:"cert_hash"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /webtransport: %s %v", resp.Status, err)
	}
	hash, err := base64.StdEncoding.DecodeString(info.CertHash)
	if err != nil {
		return nil, err
	}
	tlsConf := http3.ConfigureTLSConfig(&tls.Config{
		InsecureSkipVerify: true, // verified by its hash:
		VerifyConnection: func(cs tls.ConnectionState) error {
			if h := sha256.Sum256(cs.PeerCertificates[0].Raw); !bytes.Equal(h[:], hash) {
				return errors.New("webtransport: certificate hash mismatch")
			}
			return nil
		}})
	t := &wtTarget{url: info.URL, tr: &wt.Transport{TLSClientConfig: tlsConf,
		QUICConfig: &quic.Config{EnableDatagrams: true, EnableStreamResetPartialDelivery: true, KeepAlivePeriod: 15 * time.Second}}}
	wtTargets[base] = t
	return t, nil
}

// wtConn is a session's control stream.
type wtConn struct {
	sess *wt.Session
	str  *wt.Stream
	r    *bufio.Reader
}

// subscribe opens a session, subscribes to filter and returns once the
// edge acknowledged it.
func (t *wtTarget) subscribe(ctx context.Context, filter string) (*wtConn, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, sess, err := t.tr.Dial(dctx, t.url, nil)
	if err != nil {
		return nil, err
	}
	str, err := sess.OpenStreamSync(dctx)
	if err != nil {
		_ = sess.CloseWithError(0, "")
		return nil, err
	}
	c := &wtConn{sess: sess, str: str, r: bufio.NewReaderSize(str, 16<<10)}
	b, _ := json.Marshal(map[string]any{"op": "subscribe", "id": "s", "topic": filter})
	f := make([]byte, 5+len(b))
	f[0] = 1
	binary.BigEndian.PutUint32(f[1:], uint32(len(b)))
	copy(f[5:], b)
	_ = str.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := str.Write(f); err != nil {
		c.close()
		return nil, err
	}
	for {
		w, err := c.read()
		if err != nil {
			c.close()
			return nil, err
		}
		if w.Type == "ack" && w.ID == "s" {
			break
		}
		if w.Type == "error" {
			c.close()
			return nil, errors.New("webtransport subscribe refused")
		}
	}
	_ = str.SetDeadline(time.Time{})
	return c, nil
}

// read returns the next frame.
func (c *wtConn) read() (wireMessage, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return wireMessage{}, err
	}
	b := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	if _, err := io.ReadFull(c.r, b); err != nil {
		return wireMessage{}, err
	}
	var w wireMessage
	err := json.Unmarshal(b, &w)
	return w, err
}

func (c *wtConn) close() { _ = c.sess.CloseWithError(0, "") }

// wtSubscriber is a run's WebTransport subscriber.
func wtSubscriber(ctx context.Context, base, filter string, r *receiver) (func(), error) {
	t, err := targetWT(ctx, base)
	if err != nil {
		return nil, err
	}
	c, err := t.subscribe(ctx, filter)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			w, err := c.read()
			if err != nil {
				return
			}
			if w.Type == "message" {
				r.record(w.bytes())
			}
		}
	}()
	return c.close, nil
}
