// Package tenancy tests Herald's tenants end to end on the local cluster
// (deploy/local/cluster.sh on free loopback ports: NATS, Redis, etcd, edges
// A and B in authenticated mode, session, admin): tenants and API keys
// created through the admin REST API, enforced by the edges for MQTT (Paho
// v5), SSE and WebSocket clients, and changed live.
//
// The binaries must be built first (`make build servers`; $HERALD_BIN
// points elsewhere).
package tenancy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/tests/localcluster"
)

// cluster is the local cluster every test of this package runs against.
var cluster *localcluster.Cluster

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "herald-tenancy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if cluster, err = localcluster.Start(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	code := m.Run()
	if code != 0 {
		cluster.DumpLogs(os.Stderr)
	}
	return code
}

// admin calls the admin REST API with the operator token and decodes the
// answer into out (if not nil); a status other than 200 fails the test.
func admin(t *testing.T, method, path string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, cluster.Admin+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cluster.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

type capability struct {
	Filter  string   `json:"filter"`
	Actions []string `json:"actions"`
}

func caps(filter string, actions ...string) capability {
	for i, a := range actions {
		actions[i] = "ACTION_" + strings.ToUpper(a)
	}
	return capability{Filter: filter, Actions: actions}
}

// createTenant creates a tenant with limits (JSON names of Limits).
func createTenant(t *testing.T, id string, limits map[string]any) {
	t.Helper()
	body := map[string]any{"id": id}
	if limits != nil {
		body["limits"] = limits
	}
	admin(t, "POST", "/v1/tenants", body, nil)
}

// apiKey is a created key: its id and its token.
type apiKey struct {
	ID, Token string
}

func createKey(t *testing.T, tenant string, cs ...capability) apiKey {
	t.Helper()
	var out struct {
		Key struct {
			ID string `json:"id"`
		} `json:"key"`
		Token string `json:"token"`
	}
	admin(t, "POST", "/v1/tenants/"+tenant+"/keys", map[string]any{"description": t.Name(), "capabilities": cs}, &out)
	if out.Token == "" || out.Key.ID == "" {
		t.Fatalf("key of %s: no token or id: %+v", tenant, out)
	}
	return apiKey{ID: out.Key.ID, Token: out.Token}
}

// settle gives the edges' Directories time to see a change made through
// the admin API (a watch: normally milliseconds).
func settle() { time.Sleep(300 * time.Millisecond) }
