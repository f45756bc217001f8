// Package e2e runs Herald end to end — built binaries, real servers, clients
// nobody here wrote (Eclipse Paho, mosquitto_sub) — in its two shapes: the
// local cluster (deploy/local/cluster.sh) and the embedded default (`make run`).
//
// The binaries must be built first (`make build servers`; `make test` does it).
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"github.com/heraldmq/herald/tests/localcluster"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// endpoints are the public addresses of one edge.
type endpoints struct {
	MQTT string // host:port
	HTTP string // http://host:port
}

// deployment is a running Herald: edges A and B (the same process in the
// embedded default) and the NATS URL of its backbone.
type deployment struct {
	A, B    endpoints
	NATSURL string
	Admin   string
}

func binary(tb testing.TB, name string) string {
	tb.Helper()
	p := filepath.Join(localcluster.BinDir(), name)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("%s is missing: run `make build servers` (make test does)", p)
	}
	return p
}

func waitHTTP(tb testing.TB, url string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not ready after %s (last error %v)", url, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startCluster runs the local cluster on free ports in a temp dir.
func startCluster(t *testing.T) *deployment {
	t.Helper()
	c := startLocalCluster(t)
	return &deployment{A: endpoints{MQTT: c.A.MQTT, HTTP: c.A.HTTP}, B: endpoints{MQTT: c.B.MQTT, HTTP: c.B.HTTP},
		NATSURL: c.NATSURL, Admin: c.Admin}
}

// startLocalCluster runs the local cluster on free ports in a temp dir,
// with env added to the script's environment, until the test ends.
func startLocalCluster(t *testing.T, env ...string) *localcluster.Cluster {
	t.Helper()
	c, err := localcluster.Start(t.TempDir(), env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs(logWriter{t})
		}
		if err := c.Stop(); err != nil {
			t.Log(err)
		}
	})
	return c
}

// logWriter sends writes to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// startEmbedded runs bin/herald as `make run` does — the embedded default
// with its data directory — on free ports given through the environment,
// with its NATS listener asked for (and its credentials in NATSURL), for
// tests that look at the backbone.
func startEmbedded(t *testing.T) *deployment {
	t.Helper()
	p, err := localcluster.FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "herald.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t, "herald"), "--data-dir", filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(),
		"HERALD_MQTT_ADDR=127.0.0.1:"+strconv.Itoa(p[0]),
		"HERALD_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(p[1]),
		"HERALD_ADMIN_ADDR=127.0.0.1:"+strconv.Itoa(p[2]),
		"HERALD_NATS_ADDR=127.0.0.1:"+strconv.Itoa(p[3]),
		"HERALD_OPS_ADDR=127.0.0.1:"+strconv.Itoa(p[4]),
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- herald log\n%s", b)
		}
	})
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", p[4]), 60*time.Second)
	password, err := os.ReadFile(filepath.Join(dir, "data", "nats-password"))
	if err != nil {
		t.Fatal(err)
	}
	e := endpoints{MQTT: "127.0.0.1:" + strconv.Itoa(p[0]), HTTP: "http://127.0.0.1:" + strconv.Itoa(p[1])}
	return &deployment{A: e, B: e, NATSURL: "nats://herald:" + string(password) + "@127.0.0.1:" + strconv.Itoa(p[3]),
		Admin: "http://127.0.0.1:" + strconv.Itoa(p[2])}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	ID, Event, Data string
}

// sseClient reads an event stream per the WHATWG EventSource parsing rules
// (fields id, event, data; comments and retry ignored).
type sseClient struct {
	resp   *http.Response
	events chan sseEvent
	errc   chan error
	cancel context.CancelFunc
}

func openSSE(t *testing.T, base string, query string, lastEventID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?"+query, nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("GET /sse?%s: %s", query, resp.Status)
	}
	c := &sseClient{resp: resp, events: make(chan sseEvent, 4096), errc: make(chan error, 1), cancel: cancel}
	ready := make(chan struct{})
	go func() {
		r := bufio.NewReader(resp.Body)
		var ev sseEvent
		var data []string
		first := true
		for {
			line, err := r.ReadString('\n')
			if first {
				// The edge writes its first line (retry:) once its live
				// interest is in effect.
				close(ready)
				first = false
			}
			if err != nil {
				c.errc <- err
				close(c.events)
				return
			}
			line = strings.TrimRight(line, "\r\n")
			switch {
			case line == "":
				if len(data) > 0 || ev.ID != "" {
					ev.Data = strings.Join(data, "\n")
					c.events <- ev
				}
				ev, data = sseEvent{}, nil
			case strings.HasPrefix(line, ":"):
			default:
				field, value, _ := strings.Cut(line, ":")
				value = strings.TrimPrefix(value, " ")
				switch field {
				case "id":
					ev.ID = value
				case "event":
					ev.Event = value
				case "data":
					data = append(data, value)
				}
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("SSE stream sent nothing within 10s")
	}
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
}

// next returns the next event of the given type.
func (c *sseClient) next(t *testing.T, event string, timeout time.Duration) sseEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatalf("SSE stream ended: %v", <-c.errc)
			}
			if ev.Event == event || (event == "message" && ev.Event == "") {
				return ev
			}
		case <-deadline:
			t.Fatalf("no SSE %q event within %s", event, timeout)
		}
	}
}
