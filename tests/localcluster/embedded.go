package localcluster

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// Embedded is bin/herald, the all-in-one process of `make run`, running on
// free loopback ports with its data in a directory of the caller's.
type Embedded struct {
	MQTT  string // host:port
	HTTP  string // http://host:port
	Admin string // http://host:port
	Ops   string // http://host:port: /healthz, /readyz
	// Log is the file its standard output and error go to.
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartEmbedded starts bin/herald as `make run` does, with its data in
// dir/data, its log in dir/herald.log and env added to its environment
// (HERALD_* settings), and waits until it is ready. On error nothing is
// left running.
func StartEmbedded(dir string, env ...string) (*Embedded, error) {
	bin := filepath.Join(BinDir(), "herald")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s is missing: run `make build` (make test does)", bin)
	}
	p, err := FreePorts(4)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(p[i]) }
	e := &Embedded{MQTT: addr(0), HTTP: "http://" + addr(1), Admin: "http://" + addr(2), Ops: "http://" + addr(3),
		Log: filepath.Join(dir, "herald.log"), done: make(chan struct{})}
	log, err := os.Create(e.Log)
	if err != nil {
		return nil, err
	}
	e.cmd = exec.Command(bin, "--data-dir", filepath.Join(dir, "data"))
	e.cmd.Env = append(append(os.Environ(), "HERALD_MQTT_ADDR="+addr(0), "HERALD_HTTP_ADDR="+addr(1),
		"HERALD_ADMIN_ADDR="+addr(2), "HERALD_OPS_ADDR="+addr(3)), env...)
	e.cmd.Stdout, e.cmd.Stderr = log, log
	if err := e.cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	go func() { _ = e.cmd.Wait(); log.Close(); close(e.done) }()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(e.Ops + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return e, nil
			}
		}
		select {
		case <-e.done:
			return nil, fmt.Errorf("bin/herald exited before it was ready; see %s", e.Log)
		default:
		}
		if time.Now().After(deadline) {
			_ = e.Stop()
			return nil, fmt.Errorf("bin/herald not ready after 60 s; see %s", e.Log)
		}
	}
}

// Stop sends SIGINT, as Ctrl-C on `make run` does, and waits up to 30 s
// for herald to drain and exit; then it kills it and says so.
func (e *Embedded) Stop() error {
	_ = e.cmd.Process.Signal(os.Interrupt)
	select {
	case <-e.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
		return errors.New("localcluster: bin/herald still running 30 s after SIGINT: killed")
	}
}
