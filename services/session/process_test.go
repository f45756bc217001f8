package session_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/session"
)

// binDir holds the herald-session binary the process tests run, built once
// per test binary from this module's source.
var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func sessionBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "herald-session-test"); buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "herald-session"), "./cmd/herald-session").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "herald-session")
}

// proc is one herald-session process.
type proc struct {
	cmd    *exec.Cmd
	ops    string
	log    string
	exited chan struct{}
}

// spawn starts herald-session as replica id against the env's NATS and
// Redis and waits until it is ready; it is stopped (SIGTERM, then SIGKILL)
// at the end of the test, and its log is shown if the test failed.
func (e env) spawn(t *testing.T, id string) *proc {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ops := l.Addr().String()
	l.Close()
	p := &proc{ops: ops, log: filepath.Join(t.TempDir(), id+".log"), exited: make(chan struct{})}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(sessionBinary(t),
		"--nats-url", e.natsURL, "--redis-addrs", e.redisAddr, "--redis-prefix", e.prefix,
		"--ops-addr", ops, "--replica-id", id, "--poll-interval", "100ms", "--fetch-wait", "100ms",
		"--batch-size", "7", "--lease-ttl", "1s", "--log-format", "text")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("log of %s:\n%s", id, b)
		}
	})
	waitFor(t, id+" ready", func() bool {
		resp, err := http.Get("http://" + ops + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// kill9 kills the process with SIGKILL: no lease released, no ack sent.
func (p *proc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.kill9()
	}
}

type procStats struct {
	session.Stats
	Owned []string
}

func (p *proc) stats(t *testing.T) procStats {
	t.Helper()
	var st procStats
	resp, err := http.Get("http://" + p.ops + "/stats")
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// publisher publishes n messages to tenant, on topics s/0..s/4, every
// seventh retained, and records each payload by sequence. It calls at(i)
// before message i.
func (e env) publisher(t *testing.T, tenant string, n int, at func(i int)) (payloads map[uint64]string, last uint64, retained map[string]string) {
	payloads, retained = map[uint64]string{}, map[string]string{}
	for i := range n {
		if at != nil {
			at(i)
		}
		tp, payload := fmt.Sprintf("s/%d", i%5), fmt.Sprintf("%s-m%d", tenant, i)
		pos, err := e.bb.Publish(context.Background(), &message.Message{Tenant: tenant, Topic: tp, Payload: []byte(payload), QoS: 1, Retain: i%7 == 0}, backbone.PublishOptions{})
		if err != nil {
			t.Error(err)
			return
		}
		payloads[pos.Seq], last = payload, pos.Seq
		if i%7 == 0 {
			retained[tp] = payload
		}
	}
	return payloads, last, retained
}

// checkWhole asserts the tenant's buffer is exactly the stream, each
// sequence once with its payload, and each topic's retained message is the
// last one published.
func (e env) checkWhole(t *testing.T, tenant string, last uint64, payloads map[uint64]string, retained map[string]string) {
	t.Helper()
	e.waitApplied(t, tenant, last)
	e.checkReplay(t, tenant, last, payloads)
	var want []string
	for tp, p := range retained {
		want = append(want, tp+"="+p)
	}
	slices.Sort(want)
	if got := retainedTopics(t, e.st, tenant, "#"); !slices.Equal(got, want) {
		t.Fatalf("%s retained %v, want %v", tenant, got, want)
	}
}

// TestProcessKill9MidStream ensures a herald-session killed with SIGKILL
// while messages flow, then restarted, leaves retained messages and the
// replay buffer whole: every message once, none lost.
func TestProcessKill9MidStream(t *testing.T) {
	e := newEnv(t)
	e.publish(t, "t1", "warmup", "w", false)
	p := e.spawn(t, "r1")
	e.waitApplied(t, "t1", 1)
	payloads, last, retained := e.publisher(t, "t1", 600, func(i int) {
		if i == 200 {
			p.kill9()
			p = e.spawn(t, "r1") // same replica id: takes its lease over at once
		}
	})
	payloads[1] = "w"
	e.checkWhole(t, "t1", last, payloads, retained)
}

// TestProcessFlushRedisAndRestart ensures that after Redis lost everything
// while herald-session was down (killed), the restarted service rebuilds
// retained messages and the replay buffer from the stream, message by message.
func TestProcessFlushRedisAndRestart(t *testing.T) {
	e := newEnv(t)
	p := e.spawn(t, "r1")
	payloads, last, retained := e.publisher(t, "t1", 100, nil)
	e.waitApplied(t, "t1", last)
	p.kill9()
	if err := e.rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	more, last, moreRetained := e.publisher(t, "t1", 50, nil)
	for k, v := range more {
		payloads[k] = v
	}
	for k, v := range moreRetained {
		retained[k] = v
	}
	e.spawn(t, "r1")
	e.checkWhole(t, "t1", last, payloads, retained)
}

// TestProcessTwoReplicasKill9 ensures two herald-session replicas split the
// tenants, and when one is killed with SIGKILL under load the other takes
// its tenants over: nothing lost, nothing written twice (each tenant's
// buffer equals its stream, each sequence once).
func TestProcessTwoReplicasKill9(t *testing.T) {
	e := newEnv(t)
	tenants := []string{"t1", "t2", "t3", "t4", "t5", "t6"}
	for _, tn := range tenants {
		e.publish(t, tn, "warmup", "w", false)
	}
	r1 := e.spawn(t, "r1")
	r2 := e.spawn(t, "r2")
	waitFor(t, "tenants split", func() bool {
		a, b := r1.stats(t).Owned, r2.stats(t).Owned
		return len(a) > 0 && len(b) > 0 && len(a)+len(b) == len(tenants)
	})
	victim := r2.stats(t).Owned

	type result struct {
		payloads map[uint64]string
		last     uint64
		retained map[string]string
	}
	results := make([]result, len(tenants))
	var killOnce sync.Once
	var wg sync.WaitGroup
	for i, tn := range tenants {
		wg.Go(func() {
			p, last, ret := e.publisher(t, tn, 300, func(n int) {
				if n == 100 {
					killOnce.Do(r2.kill9)
				}
			})
			p[1] = "w"
			results[i] = result{p, last, ret}
		})
	}
	wg.Wait()
	waitFor(t, "r1 owns every tenant", func() bool { return slices.Equal(r1.stats(t).Owned, tenants) })
	for i, tn := range tenants {
		e.checkWhole(t, tn, results[i].last, results[i].payloads, results[i].retained)
	}
	if st := r1.stats(t); st.LeasesAcquired < uint64(len(tenants)) {
		t.Fatalf("r1 stats %+v: took fewer leases than tenants (r2 held %v)", st, victim)
	}
}
