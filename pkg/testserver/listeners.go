package testserver

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Listeners returns the sockets this process listens on, as "tcp
// host:port" and "unix path" ("unix @name" for an abstract one), sorted:
// what another local process could connect to. It reads the process's
// open files in /proc/self/fd and matches their socket inodes against
// /proc/self/net (which lists the sockets of every process in the network
// namespace). Linux only.
func Listeners(tb testing.TB) []string {
	tb.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatalf("listeners: %v", err)
	}
	mine := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil {
			continue // closed since ReadDir
		}
		if inode, ok := strings.CutPrefix(target, "socket:["); ok {
			mine[strings.TrimSuffix(inode, "]")] = true
		}
	}
	var out []string
	for _, table := range []string{"tcp", "tcp6"} {
		for _, f := range procNet(tb, table) {
			// sl local_address rem_address st ... inode: listening is 0A.
			if len(f) > 9 && f[3] == "0A" && mine[f[9]] {
				out = append(out, "tcp "+hexAddr(tb, f[1]))
			}
		}
	}
	for _, f := range procNet(tb, "unix") {
		// Num RefCount Protocol Flags Type St Inode [Path]: a listening
		// socket has the accept flag (0x10000) set.
		if len(f) < 7 || !mine[f[6]] {
			continue
		}
		if flags, err := strconv.ParseUint(f[3], 16, 32); err != nil || flags&0x10000 == 0 {
			continue
		}
		path := "(unnamed)"
		if len(f) > 7 {
			path = f[7]
		}
		out = append(out, "unix "+path)
	}
	slices.Sort(out)
	return out
}

// procNet returns the fields of each row of /proc/self/net/<table>.
func procNet(tb testing.TB, table string) [][]string {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/net/" + table)
	if err != nil {
		if os.IsNotExist(err) {
			return nil // no IPv6, say
		}
		tb.Fatalf("listeners: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	rows := make([][]string, 0, len(lines))
	for _, l := range lines[1:] {
		rows = append(rows, strings.Fields(l))
	}
	return rows
}

// hexAddr decodes /proc/net/tcp's address form: the IP as bytes in host
// (little-endian) order per 32-bit word, then the port in hex.
func hexAddr(tb testing.TB, s string) string {
	tb.Helper()
	ipHex, portHex, _ := strings.Cut(s, ":")
	raw, err := hex.DecodeString(ipHex)
	port, perr := strconv.ParseUint(portHex, 16, 16)
	if err != nil || perr != nil || len(raw)%4 != 0 {
		tb.Fatalf("listeners: address %q", s)
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(port))
}
