package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestGet ensures stamped values win, the toolchain's record fills what is
// not stamped (the revision abbreviated, marked dirty when the tree had
// changes), and a binary with neither says so instead of printing blanks.
func TestGet(t *testing.T) {
	recorded := func(version string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{Main: debug.Module{Version: version}}
			for i := 0; i+1 < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	for _, tc := range []struct {
		name                  string
		version, commit       string
		read                  func() (*debug.BuildInfo, bool)
		wantVersion, wantComm string
	}{
		{"stamped", "0.1.0", "7ec1dd2", recorded("v9.9.9", "vcs.revision", "ffffffffffffffffffff"), "0.1.0", "7ec1dd2"},
		{"recorded", "", "", recorded("v0.2.0", "vcs.revision", "0123456789abcdef0123", "vcs.modified", "false"), "v0.2.0", "0123456789ab"},
		{"recorded dirty", "", "", recorded("(devel)", "vcs.revision", "0123456789abcdef0123", "vcs.modified", "true"), "(devel)", "0123456789ab-dirty"},
		{"version stamped, commit recorded", "0.1.0", "", recorded("(devel)", "vcs.revision", "abc"), "0.1.0", "abc"},
		{"nothing recorded", "", "", recorded(""), "(devel)", "unknown"},
		{"no build info", "", "", none, "(devel)", "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := get(tc.version, tc.commit, tc.read)
			if in.Version != tc.wantVersion || in.Commit != tc.wantComm {
				t.Errorf("got version %q commit %q, want %q %q", in.Version, in.Commit, tc.wantVersion, tc.wantComm)
			}
			if in.Go != runtime.Version() {
				t.Errorf("Go = %q, want %q", in.Go, runtime.Version())
			}
			s := in.String("herald")
			for _, want := range []string{"herald ", tc.wantVersion, "commit " + tc.wantComm, runtime.Version()} {
				if !strings.Contains(s, want) {
					t.Errorf("String() = %q, lacks %q", s, want)
				}
			}
		})
	}
}
