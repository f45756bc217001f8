package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
)

type reportCmd struct {
	Dir    string `placeholder:"DIR" help:"Directory of result JSON files (<target>--<scenario>.json)." required:""`
	Commit string `placeholder:"TEXT" help:"Commit the run measured."`
}

// scenarioNotes say what each scenario is, in the report.
var scenarioNotes = map[string]string{
	"s1-qos0":          "1 publisher → 1 subscriber, QoS 0, 100-byte payloads, as fast as possible",
	"s1-qos1":          "1 publisher → 1 subscriber, QoS 1, 100-byte payloads, as fast as possible (publisher pipelines up to the receive maximum)",
	"s1-latency":       "1 publisher → 1 subscriber, QoS 1, 1,000 msgs/s: latency at a load every broker sustains",
	"s1-half":          "1 publisher → 1 subscriber, QoS 1, 100-byte payloads, at half of the QoS 1 throughput Herald reached in s1-qos1 in this run (the latency target's load; Mosquitto at the same rate)",
	"s2-fanout":        "1 publisher → N subscribers on one topic, QoS 0, 50 msgs/s (the 1,000 load-generator clients share the 2 cores: faster publishing measures the load generator)",
	"s2-fanout-max":    "1 publisher → 100 subscribers on one topic, QoS 0, 100-byte payloads, as fast as possible: deliveries per second (the load generator's 100 subscribers share the 2 cores with the broker)",
	"s3-fanin":         "N publishers × 20 msgs/s → 1 subscriber (wildcard), QoS 0",
	"s6-flood":         "10 publishers → 1 subscriber (wildcard), QoS 0, 100-byte payloads, as fast as possible: the subscriber reads at full speed, so a broker that cannot keep up must slow the publishers, not lose messages",
	"s4-idle-mqtt":     "idle MQTT 3.1.1 connections: server RSS growth per connection (as many connections as the machine's open-file limit allows, up to 50,000)",
	"s4-idle-mqtt-sub": "idle MQTT 3.1.1 connections, each with one QoS 1 subscription to a topic of its own: server RSS growth per connection (same bound)",
	"s4-idle-sse":      "idle SSE connections: server RSS growth per connection (same bound)",
	"s4-idle-ws":       "idle WebSocket connections, each subscribed to one topic: server RSS growth per connection (same bound)",
	"s5-mixed":         "MQTT publisher → 300 subscribers, a third each on SSE, WebSocket and MQTT, QoS 1, 200 msgs/s",
	"s4-idle-wt":       "idle WebTransport sessions (QUIC, TLS 1.3), each subscribed to one topic: server RSS growth per session (at most 5,000)",
	"s6-1to1-ws":       "MQTT publisher → 1 subscriber on the native protocol over WebSocket (plain TCP), QoS 1, 100-byte payloads, as fast as possible",
	"s6-1to1-wt":       "the same, the subscriber on WebTransport (HTTP/3, QUIC with TLS 1.3)",
	"s6-fanout-ws":     "MQTT publisher → 300 WebSocket subscribers on one topic, QoS 0, 100 msgs/s",
	"s6-fanout-wt":     "the same, 300 WebTransport subscribers",
}

func (c *reportCmd) Run() error {
	files, err := filepath.Glob(filepath.Join(c.Dir, "*.json"))
	if err != nil {
		return err
	}
	runs := map[string]map[string]Result{}
	idles := map[string]map[string]IdleResult{}
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".json")
		target, scenario, ok := strings.Cut(base, "--")
		if !ok {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		if strings.HasPrefix(scenario, "s4-") {
			var r IdleResult
			if json.Unmarshal(b, &r) == nil {
				if idles[scenario] == nil {
					idles[scenario] = map[string]IdleResult{}
				}
				idles[scenario][target] = r
			}
			continue
		}
		var r Result
		if json.Unmarshal(b, &r) == nil {
			if runs[scenario] == nil {
				runs[scenario] = map[string]Result{}
			}
			runs[scenario][target] = r
		}
	}
	w := os.Stdout
	fmt.Fprintf(w, "# Herald benchmarks\n\n")
	fmt.Fprintf(w, "Made by `make bench` (tools/bench/bench.sh, tools/loadgen) in one run: every figure below comes from the result files of that run; nothing is edited by hand.\n\n")
	fmt.Fprintf(w, "- date: %s\n- commit: %s\n- machine: %s, %d cores, %s, %s, open-file limit %s\n\n", time.Now().UTC().Format(time.RFC3339), c.Commit, cpuModel(), runtime.NumCPU(), memTotal(), runtime.GOOS+"/"+runtime.GOARCH, fileLimit())
	fmt.Fprintf(w, "Targets: **mosquitto** (Debian mosquitto 2.0, the 1→1 and memory peer), **nats-mqtt** (nats-server's own MQTT listener, the fan-out peer), **herald** (embedded default: one process with embedded NATS JetStream), **cluster-1edge / cluster-2edge** (local cluster: separate NATS, Redis, etcd, session service; load on one or both edges). Load generator and servers share the same 2 cores, so absolute figures are low; ratios in the same run are the point.\n\n")
	fmt.Fprintf(w, "Herald acknowledges QoS 1 only after JetStream stored the message (written to the stream's file store, not fsynced per message); Mosquitto acknowledges from memory. Ratios below are Herald ÷ peer.\n\n")

	writeTargets(w, runs, idles)

	scenarios := make([]string, 0, len(runs))
	for s := range runs {
		scenarios = append(scenarios, s)
	}
	sort.Strings(scenarios)
	for _, s := range scenarios {
		fmt.Fprintf(w, "## %s\n\n%s\n\n", s, scenarioNotes[s])
		fmt.Fprintf(w, "| target | published/s | delivered/s | lost | dup | p50 ms | p99 ms | p99.9 ms | max ms | server peak RSS MiB | server CPU %% | vs mosquitto | vs nats-mqtt |\n")
		fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, t := range sortedTargets(runs[s]) {
			r := runs[s][t]
			var rss int64
			var cpu float64
			for _, sv := range r.Servers {
				rss += sv.PeakRSSBytes
				cpu += sv.CPUPercent
			}
			fmt.Fprintf(w, "| %s | %.0f | %.0f | %d | %d | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f | %s | %s |\n", t,
				r.PubPerSec, r.RecvPerSec, r.Lost, r.Duplicated,
				ms(r.LatencyUS.P50), ms(r.LatencyUS.P99), ms(r.LatencyUS.P999), ms(r.LatencyUS.Max),
				float64(rss)/(1<<20), cpu, ratio(r, runs[s]["mosquitto"]), ratio(r, runs[s]["nats-mqtt"]))
		}
		fmt.Fprintln(w)
	}
	var idleNames []string
	for s := range idles {
		idleNames = append(idleNames, s)
	}
	sort.Strings(idleNames)
	for _, s := range idleNames {
		fmt.Fprintf(w, "## %s\n\n%s\n\n| target | connections | failed | RSS before MiB | RSS after MiB | bytes per connection | vs mosquitto |\n|---|---|---|---|---|---|---|\n", s, scenarioNotes[s])
		for _, t := range sortedTargets(idles[s]) {
			r := idles[s][t]
			vs := "—"
			if m, ok := idles["s4-idle-mqtt"]["mosquitto"]; ok && m.BytesPerConn > 0 && t != "mosquitto" {
				vs = fmt.Sprintf("%.1f×", r.BytesPerConn/m.BytesPerConn)
			}
			fmt.Fprintf(w, "| %s | %d | %d | %.1f | %.1f | %.0f | %s |\n", t, r.Opened, r.FailedConnect,
				float64(r.RSSBeforeB)/(1<<20), float64(r.RSSAfterB)/(1<<20), r.BytesPerConn, vs)
		}
		fmt.Fprintln(w)
	}
	return nil
}

// writeTargets compares the run with the performance targets Herald holds
// itself to (embedded default against Mosquitto, same run).
func writeTargets(w *os.File, runs map[string]map[string]Result, idles map[string]map[string]IdleResult) {
	fmt.Fprintf(w, "## Targets\n\n| target | goal | this run | met |\n|---|---|---|---|\n")
	row := func(name, goal, got string, met, known bool) {
		m := "no"
		switch {
		case !known:
			m, got = "not measured", "—"
		case met:
			m = "yes"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", name, goal, got, m)
	}
	vs := func(scenario string, goal float64) {
		h, okh := runs[scenario]["herald"]
		m, okm := runs[scenario]["mosquitto"]
		known := okh && okm && m.RecvPerSec > 0
		r := 0.0
		if known {
			r = h.RecvPerSec / m.RecvPerSec
		}
		row(scenario+" deliveries/s vs Mosquitto", fmt.Sprintf("≥ %.1f×", goal),
			fmt.Sprintf("%.2f× (%.0f vs %.0f/s)", r, h.RecvPerSec, m.RecvPerSec), r >= goal, known)
	}
	vs("s1-qos0", 0.7)
	vs("s1-qos1", 1.0)
	vs("s2-fanout-max", 1.0)
	vs("s6-flood", 0.7)
	for _, sc := range []string{"s6-flood", "s3-fanin"} {
		h, ok := runs[sc]["herald"]
		row(sc+" messages lost by Herald", "0", fmt.Sprintf("%d of %d", h.Lost, h.Expected), ok && h.Lost == 0, ok)
	}
	h, ok := runs["s1-half"]["herald"]
	row("s1-half p99 publish→deliver", "≤ 5 ms", fmt.Sprintf("%.2f ms at %.0f msgs/s", ms(h.LatencyUS.P99), h.PubPerSec),
		ok && ms(h.LatencyUS.P99) <= 5, ok)
	idle := func(scenario, label string, kib float64) {
		r, ok := idles[scenario]["herald"]
		row(label+" memory per idle connection", fmt.Sprintf("≤ %.0f KiB", kib),
			fmt.Sprintf("%.1f KiB at %d connections", r.BytesPerConn/1024, r.Opened), ok && r.BytesPerConn <= kib*1024, ok)
	}
	idle("s4-idle-mqtt", "MQTT", 10)
	idle("s4-idle-mqtt-sub", "MQTT with one subscription", 10)
	idle("s4-idle-sse", "SSE", 12)
	fmt.Fprintln(w)
}

func sortedTargets[T any](m map[string]T) []string {
	order := map[string]int{"mosquitto": 0, "nats-mqtt": 1, "herald": 2, "cluster-1edge": 3, "cluster-2edge": 4}
	var out []string
	for t := range m {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return order[out[i]] < order[out[j]] })
	return out
}

func ms(us int64) float64 { return float64(us) / 1000 }

func ratio(r, peer Result) string {
	if peer.RecvPerSec == 0 || r.Name == peer.Name {
		return "—"
	}
	return fmt.Sprintf("%.2f×", r.RecvPerSec/peer.RecvPerSec)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			return strings.TrimSpace(v) + " RAM"
		}
	}
	return "unknown RAM"
}

func fileLimit() string {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return "unknown"
	}
	return fmt.Sprint(l.Max)
}
