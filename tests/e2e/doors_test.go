package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/tests/localcluster"
	"github.com/nats-io/nats.go"
)

// TestClusterDoorsNeedCredentials ensures that no server of the local
// cluster, in its plain and its HA shape, serves a local process without
// credentials: an anonymous NATS connection (to SUB herald.>) and an
// unauthenticated route are refused by every NATS server; an etcd write
// without credentials, an edge's write, and the admin's write outside
// /herald/ are refused; Redis, its replica and Sentinel answer NOAUTH.
// The credentials the cluster keeps 0600 are what its services use: with
// them a subscriber of herald.> sees a message published on an edge.
func TestClusterDoorsNeedCredentials(t *testing.T) {
	for _, ha := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "ha"}[ha], func(t *testing.T) {
			var env []string
			if ha {
				env = append(env, "HERALD_HA=1")
			}
			c := startLocalCluster(t, env...)
			checkNATSDoors(t, c)
			checkEtcdDoors(t, c)
			checkRedisDoors(t, c)
			checkCommandLines(t, c)
		})
	}
}

// withoutUser is a NATS URL without its user info.
func withoutUser(u string) string {
	scheme, rest, _ := strings.Cut(u, "://")
	if _, host, ok := strings.Cut(rest, "@"); ok {
		rest = host
	}
	return scheme + "://" + rest
}

func checkNATSDoors(t *testing.T, c *localcluster.Cluster) {
	for _, u := range c.NATSURLs {
		for _, opts := range [][]nats.Option{nil, {nats.UserInfo(c.NATSUser, "guess")}} {
			nc, err := nats.Connect(withoutUser(u), opts...)
			if err == nil {
				_, serr := nc.SubscribeSync("herald.>")
				nc.Close()
				t.Errorf("NATS %s with %d options: connected (SUB herald.>: %v)", withoutUser(u), len(opts), serr)
			} else if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("NATS %s with %d options: %v, want %v", withoutUser(u), len(opts), err, nats.ErrAuthorization)
			}
		}
	}
	if c.HA {
		for _, v := range []string{"NATS_ROUTE_PORT_1", "NATS_ROUTE_PORT_2", "NATS_ROUTE_PORT_3"} {
			if got := routeAnswer(t, "127.0.0.1:"+c.Env(v)); !strings.HasPrefix(got, "-ERR") {
				t.Errorf("route %s without credentials answered %q, want -ERR", c.Env(v), got)
			}
		}
	}

	// The cluster's own credentials: a subscriber of everything sees a
	// message published on edge A.
	nc, err := nats.Connect(strings.Join(c.NATSURLs, ","))
	if err != nil {
		t.Fatalf("NATS with the cluster's credentials: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("herald.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(c.A.HTTP+"/publish?topic=doors/x", "text/plain", strings.NewReader("through the front door"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("credentialed subscriber: %v", err)
		}
		if string(m.Data) == "through the front door" {
			break
		}
	}
}

// dialLines connects to addr for a line protocol, for at most 10 s; the
// connection closes at the end of the test.
func dialLines(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn, bufio.NewReader(conn)
}

// routeAnswer connects to a NATS route port as a server would, without
// credentials, and returns the first line after the server's INFO: a
// route that is let in answers the PING with PONG.
func routeAnswer(t *testing.T, addr string) string {
	t.Helper()
	conn, r := dialLines(t, addr)
	if info, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(info, "INFO ") {
		t.Fatalf("route %s: %q %v", addr, info, err)
	}
	connect := `CONNECT {"verbose":false,"pedantic":false,"tls_required":false,"name":"intruder","cluster":"herald-local","headers":true}`
	if _, err := io.WriteString(conn, connect+"\r\nPING\r\n"); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "closed: " + err.Error()
		}
		// A route let in may send its own INFO and protocol first.
		if line = strings.TrimSpace(line); line == "PONG" || strings.HasPrefix(line, "-ERR") {
			return line
		}
	}
}

// etcdCall calls etcd's JSON gateway at path with body, as token if not
// empty, and returns the decoded answer and its status.
func etcdCall(t *testing.T, c *localcluster.Cluster, token, path string, body any) (map[string]any, int) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+c.EtcdAddr+path, strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("etcd %s: %v", path, err)
	}
	return out, resp.StatusCode
}

// etcdPut puts key as user (none if empty) and returns etcd's error
// message, "" if the put was accepted.
func etcdPut(t *testing.T, c *localcluster.Cluster, user, key string) string {
	t.Helper()
	token := ""
	if user != "" {
		out, status := etcdCall(t, c, "", "/v3/auth/authenticate", map[string]string{"name": user, "password": c.EtcdUsers[user]})
		if status != http.StatusOK {
			t.Fatalf("etcd authenticate %s: %d %v", user, status, out)
		}
		token, _ = out["token"].(string)
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	out, status := etcdCall(t, c, token, "/v3/kv/put", map[string]string{"key": b64(key), "value": b64("intruder")})
	if status == http.StatusOK {
		return ""
	}
	return fmt.Sprint(out["message"])
}

func checkEtcdDoors(t *testing.T, c *localcluster.Cluster) {
	for _, tc := range []struct{ user, key, refusal string }{
		{"", "/herald/admin-keys/intruder", "user name is empty"},
		{"herald-edge", "/herald/admin-keys/intruder", "permission denied"},
		{"herald-admin", "/elsewhere", "permission denied"},
		{"herald-admin", "/herald/doors-test", ""},
		{"root", "/elsewhere", ""},
	} {
		got := etcdPut(t, c, tc.user, tc.key)
		if tc.refusal == "" && got != "" || !strings.Contains(got, tc.refusal) {
			t.Errorf("etcd put of %s as %q: %q, want %q", tc.key, tc.user, got, tc.refusal)
		}
	}
}

// redisAnswer sends commands (RESP inline) to a Redis server or Sentinel
// and returns the first line of the last answer.
func redisAnswer(t *testing.T, addr string, commands ...string) string {
	t.Helper()
	conn, r := dialLines(t, addr)
	var line string
	for _, cmd := range commands {
		if _, err := io.WriteString(conn, cmd+"\r\n"); err != nil {
			t.Fatal(err)
		}
		var err error
		if line, err = r.ReadString('\n'); err != nil {
			t.Fatalf("redis %s: %v", addr, err)
		}
	}
	return strings.TrimSpace(line)
}

func checkRedisDoors(t *testing.T, c *localcluster.Cluster) {
	// Redis names an unknown command before it asks for the password: each
	// server is asked what it knows.
	servers := map[string][]string{c.RedisAddr: {"PING", "SET herald:intruder x"}}
	if c.HA {
		servers[c.RedisReplicaAddr] = []string{"PING", "GET herald:intruder"}
		servers[c.SentinelAddr] = []string{"PING", "SENTINEL masters"}
	}
	for a, cmds := range servers {
		for _, cmd := range cmds {
			if got := redisAnswer(t, a, cmd); !strings.HasPrefix(got, "-NOAUTH") {
				t.Errorf("redis %s: %s without the password answered %q, want -NOAUTH", a, cmd, got)
			}
		}
		if got := redisAnswer(t, a, "AUTH "+c.RedisPassword, "PING"); got != "+PONG" {
			t.Errorf("redis %s with the password: %q", a, got)
		}
	}
}

// checkCommandLines checks that no secret is on the command line of a
// cluster process, which any local user may read in /proc.
func checkCommandLines(t *testing.T, c *localcluster.Cluster) {
	secrets := map[string]string{"nats": c.NATSPassword, "redis": c.RedisPassword, "admin token": c.AdminToken}
	for user, pw := range c.EtcdUsers {
		secrets["etcd "+user] = pw
	}
	pidFiles, err := filepath.Glob(filepath.Join(c.Dir, "pids", "*.pid"))
	if err != nil || len(pidFiles) < 7 {
		t.Fatalf("pid files %v: %v", pidFiles, err)
	}
	for _, f := range pidFiles {
		name := strings.TrimSuffix(filepath.Base(f), ".pid")
		pid, err := c.PID(name)
		if err != nil {
			t.Fatal(err)
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for what, secret := range secrets {
			if strings.Contains(string(cmdline), secret) {
				t.Errorf("the %s secret is on the command line of %s", what, name)
			}
		}
	}
}
