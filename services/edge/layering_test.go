package edge_test

import (
	"os/exec"
	"strings"
	"testing"
)

// transports are the edge's protocol packages: encoders of the core's
// Feed and decoders of its publishes.
var transports = []string{"mqtt", "sse", "ws", "poll", "httpapi", "webtransport"}

// coreOnly are the packages the core keeps to itself: the backbone, the
// session store and the hub. A transport importing one is doing the
// core's work.
var coreOnly = []string{
	"github.com/heraldmq/herald/pkg/backbone",
	"github.com/heraldmq/herald/pkg/store",
	"github.com/heraldmq/herald/services/edge/internal/hub",
}

// TestTransportsUseTheCore ensures no transport package imports the
// backbone, the store or the hub (go list, as the project's checks read
// it): they reach all three through package node alone.
func TestTransportsUseTheCore(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	args := []string{"list", "-f", `{{.ImportPath}}:{{join .Imports " "}}`}
	for _, p := range transports {
		args = append(args, "./internal/"+p)
	}
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(transports) {
		t.Fatalf("go list listed %d packages, want %d:\n%s", len(lines), len(transports), out)
	}
	for _, line := range lines {
		pkg, imports, _ := strings.Cut(line, ":")
		for _, imp := range strings.Fields(imports) {
			for _, forbidden := range coreOnly {
				if imp == forbidden {
					t.Errorf("%s imports %s", pkg, imp)
				}
			}
		}
	}
}
