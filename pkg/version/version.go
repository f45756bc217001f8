// Package version says which Herald a binary is: its version, the commit it
// was built from and the Go that built it, as every command's --version
// prints them.
//
// The Makefile and the image build stamp Version and Commit with the
// linker (-X github.com/heraldmq/herald/pkg/version.Version=…); a binary
// built otherwise (go build, go install) falls back to what the Go
// toolchain recorded in it: the module's version, and the revision of the
// repository it was built in (vcs.revision, vcs.modified).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at link time (see the package doc); empty otherwise.
var (
	// Version is Herald's release, e.g. 0.1.0, or the output of
	// git describe for a build between releases.
	Version string
	// Commit is the full or abbreviated revision the binary was built
	// from, with "-dirty" when the tree had changes.
	Commit string
)

// Info is what a binary knows about its build.
type Info struct {
	Version string // "(devel)" when neither stamped nor recorded
	Commit  string // "unknown" when neither stamped nor recorded
	Go      string // runtime.Version()
	OS      string // GOOS/GOARCH
}

// Get returns the binary's build information: the stamped values, else
// those the toolchain recorded.
func Get() Info {
	return get(Version, Commit, debug.ReadBuildInfo)
}

// get is Get with its sources given, for tests.
func get(version, commit string, read func() (*debug.BuildInfo, bool)) Info {
	in := Info{Version: version, Commit: commit, Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := read(); ok {
		if in.Version == "" && bi.Main.Version != "" {
			in.Version = bi.Main.Version
		}
		if in.Commit == "" {
			var rev string
			dirty := false
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					dirty = s.Value == "true"
				}
			}
			if rev != "" {
				if len(rev) > 12 {
					rev = rev[:12]
				}
				if dirty {
					rev += "-dirty"
				}
				in.Commit = rev
			}
		}
	}
	if in.Version == "" {
		in.Version = "(devel)"
	}
	if in.Commit == "" {
		in.Commit = "unknown"
	}
	return in
}

// String is the line --version prints for program, e.g.
// "herald 0.1.0 (commit 7ec1dd2a1b3c, go1.26.8 linux/amd64)".
func (in Info) String(program string) string {
	return fmt.Sprintf("%s %s (commit %s, %s %s)", program, in.Version, in.Commit, in.Go, in.OS)
}

// String is Get().String(program).
func String(program string) string { return Get().String(program) }
