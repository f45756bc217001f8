// Command loadgen drives load against Herald (or any MQTT broker, for the
// same scenario side by side) and measures it: MQTT publishers, MQTT, SSE
// and WebSocket subscribers, in pairwise, fan-out and fan-in patterns, at a
// fixed rate or as fast as possible; and idle MQTT/SSE connections for
// memory per connection. Connections spread over source addresses
// 127.0.0.1-127.0.0.x to pass the 64k ephemeral-port limit of one address.
//
// Latency is publish→receive, from a timestamp the publisher writes into
// the payload, kept in an HDR histogram. Counts say what was delivered,
// lost and duplicated. The server's RSS and CPU are sampled from /proc
// while the run goes on. Progress goes to stderr; the result, as JSON, to
// stdout.
//
// Load goes to loopback only: every address given must be in 127.0.0.0/8,
// and every run is bounded by --duration.
package main

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/alecthomas/kong"
)

type cli struct {
	Run    runCmd    `cmd:"" help:"Publishers and subscribers: throughput, latency, loss."`
	Idle   idleCmd   `cmd:"" help:"Idle connections: server memory per connection."`
	Report reportCmd `cmd:"" help:"Markdown report (docs/benchmarks.md) from a directory of results."`
}

func main() {
	var c cli
	ctx := kong.Parse(&c, kong.Name("loadgen"), kong.Description("Herald load generator (loopback only)."))
	raiseFileLimit()
	if err := ctx.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// raiseFileLimit lifts the open-file soft limit to the hard limit: tens of
// thousands of connections need as many descriptors.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// checkLoopback refuses any target outside 127.0.0.0/8.
func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("%s is not a loopback address: load targets 127.0.0.0/8 only", hostport)
}
