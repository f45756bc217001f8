package telemetry

import (
	"slices"
	"strings"
)

// ScrapeFamilies returns the metric family names of a Prometheus text
// exposition (from its # TYPE lines), sorted.
func ScrapeFamilies(exposition string) []string {
	var out []string
	for line := range strings.Lines(exposition) {
		rest, ok := strings.CutPrefix(line, "# TYPE ")
		if !ok {
			continue
		}
		if name, _, ok := strings.Cut(rest, " "); ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
