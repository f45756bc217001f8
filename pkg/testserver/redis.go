package testserver

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// redisStartTimeout bounds the wait for one redis-server to answer PING and
// for a cluster to reach cluster_state:ok.
const redisStartTimeout = 20 * time.Second

// Redis starts a standalone redis-server (from PATH) on a free loopback port,
// without persistence, and returns its address; it is stopped by PID at the
// end of the test.
func Redis(tb testing.TB) (addr string) {
	tb.Helper()
	bin := redisBinary(tb, "redis-server")
	dir := tb.TempDir()
	var lastErr error
	// A free port can be taken between choosing and binding it: try again.
	for range 3 {
		port := freePort(tb, false)
		addr, lastErr = startRedis(tb, bin, dir, port, nil)
		if lastErr == nil {
			return addr
		}
	}
	tb.Fatalf("testserver: redis: %v", lastErr)
	return ""
}

// RedisCluster starts a Redis Cluster of six nodes (three primaries with one
// replica each) on free loopback ports, waits until every node reports
// cluster_state:ok, and returns the node addresses; every node is stopped by
// PID at the end of the test.
func RedisCluster(tb testing.TB) (addrs []string) {
	tb.Helper()
	bin := redisBinary(tb, "redis-server")
	cli := redisBinary(tb, "redis-cli")
	for i := range 6 {
		dir := filepath.Join(tb.TempDir(), strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		var addr string
		var err error
		for range 3 {
			port := freePort(tb, true)
			addr, err = startRedis(tb, bin, dir, port, []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", fmt.Sprintf("nodes-%d.conf", port),
				"--cluster-node-timeout", "5000",
				"--cluster-port", strconv.Itoa(port + 10000),
			})
			if err == nil {
				break
			}
		}
		if err != nil {
			tb.Fatalf("testserver: redis cluster node %d: %v", i, err)
		}
		addrs = append(addrs, addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("testserver: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(redisStartTimeout)
	for _, addr := range addrs {
		for {
			info, err := redisCommand(addr, "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("testserver: redis cluster not ok on %s: %v %s", addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return addrs
}

func redisBinary(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("testserver: %s not found on PATH (install it: apt-get install -y redis-server): %v", name, err)
	}
	return p
}

// startRedis runs one redis-server in the foreground of a child process, so
// that its PID is known without a pidfile, and waits until it answers PING.
func startRedis(tb testing.TB, bin, dir string, port int, extra []string) (string, error) {
	tb.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := append([]string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--logfile", filepath.Join(dir, fmt.Sprintf("redis-%d.log", port)),
	}, extra...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(redisStartTimeout)
	for {
		if pong, err := redisCommand(addr, "PING"); err == nil && pong == "PONG" {
			break
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("redis-%d.log", port)))
			return "", fmt.Errorf("redis-server on port %d exited: %v\n%s", port, err, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("redis-server on port %d did not answer PING", port)
		}
	}
	tb.Cleanup(stop)
	return addr, nil
}

// redisCommand sends one command in RESP and returns a simple or bulk string reply.
func redisCommand(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"):
		return line[1:], nil
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("redis: %s", line[1:])
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("redis: unexpected reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("redis: unexpected reply %q", line)
}

// freePort returns a loopback port that was free a moment ago. With bus, the
// port 10000 above it (the Redis Cluster bus) was free too.
func freePort(tb testing.TB, bus bool) int {
	tb.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !bus {
			return port
		}
		if port+10000 > 65535 {
			continue
		}
		if lb, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000))); err == nil {
			lb.Close()
			return port
		}
	}
	tb.Fatal("testserver: no free port pair for a Redis Cluster node")
	return 0
}

// RedisStat returns the counter name of the INFO section of the Redis at
// addr, such as rdb_changes_since_last_save (keys changed; the servers
// started here never save) or total_commands_processed: what benchmarks
// count.
func RedisStat(tb testing.TB, addr, section, name string) int64 {
	tb.Helper()
	info, err := redisCommand(addr, "INFO", section)
	if err != nil {
		tb.Fatalf("testserver: redis INFO %s: %v", section, err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				tb.Fatalf("testserver: redis INFO %s: %s: %v", section, name, err)
			}
			return n
		}
	}
	tb.Fatalf("testserver: redis INFO %s has no %s", section, name)
	return 0
}
