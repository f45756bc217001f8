package telemetry_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/heraldmq/herald/pkg/telemetry"
)

// dashboardsDir holds the Grafana dashboards shipped with Herald.
const dashboardsDir = "../../deploy/grafana/dashboards"

// metricRE finds the metric names in a PromQL query: Herald's and the Go
// runtime and process families served beside them.
var metricRE = regexp.MustCompile(`\b(?:herald|go|process)_[a-z0-9_]+\b`)

// TestDashboardsUseExportedMetrics ensures every query of every dashboard
// (panels and template variables) names only metrics Herald exports, so a
// renamed metric breaks this test rather than a dashboard, silently.
func TestDashboardsUseExportedMetrics(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no dashboards in %s", dashboardsDir)
	}
	known := telemetry.PrometheusNames()
	uids := map[string]string{}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var d map[string]any
			if err := json.Unmarshal(b, &d); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			uid, _ := d["uid"].(string)
			if uid == "" || d["title"] == "" {
				t.Errorf("dashboard without uid or title")
			}
			if other, dup := uids[uid]; dup {
				t.Errorf("uid %q also used by %s", uid, other)
			}
			uids[uid] = f
			queries := collectQueries(d)
			if len(queries) == 0 {
				t.Fatal("no queries")
			}
			for _, q := range queries {
				names := metricRE.FindAllString(q, -1)
				if len(names) == 0 {
					t.Errorf("query names no Herald metric: %s", q)
				}
				for _, n := range names {
					if !slices.Contains(known, n) {
						t.Errorf("query uses %s, which Herald does not export: %s", n, q)
					}
				}
			}
		})
	}
}

// collectQueries returns every "expr" (panel targets) and every templating
// query of a dashboard, at any depth.
func collectQueries(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && (k == "expr" || k == "definition") && s != "" {
				out = append(out, s)
				continue
			}
			out = append(out, collectQueries(e)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, collectQueries(e)...)
		}
	}
	return out
}

// TestMetricsRegistry ensures the registry's names are unique and follow
// the exporter's conventions (counters end in _total, histograms name
// their unit).
func TestMetricsRegistry(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range telemetry.Metrics {
		if seen[m.Name] {
			t.Errorf("%s listed twice", m.Name)
		}
		seen[m.Name] = true
		switch m.Type {
		case "counter":
			if !regexp.MustCompile(`_total$`).MatchString(m.Name) {
				t.Errorf("counter %s does not end in _total", m.Name)
			}
		case "histogram":
			if m.Unit == "s" && !regexp.MustCompile(`_seconds$`).MatchString(m.Name) {
				t.Errorf("histogram %s in seconds does not end in _seconds", m.Name)
			}
		case "gauge":
		default:
			t.Errorf("%s: unknown type %q", m.Name, m.Type)
		}
	}
}
