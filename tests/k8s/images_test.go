package k8s

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/heraldmq/herald/tests/localcluster"
)

// TestImages ensures every image `make images` wrote (bin/images) names
// itself, runs as the non-root user 65532 with an entrypoint, carries the
// OCI title and version labels, and, for the Go programs ko built, comes
// with an SPDX SBOM.
func TestImages(t *testing.T) {
	if os.Getenv("HERALD_K8S") != "1" {
		t.Skip("reads the images of make images: make k8s-test")
	}
	dir := filepath.Join(localcluster.RepoRoot(), "bin", "images")
	for _, tc := range []struct {
		name string
		sbom bool
	}{
		{"herald", true}, {"herald-edge", true}, {"herald-session", true}, {"herald-admin", true},
		{"nats-server", true}, {"etcd", true}, {"pause", true}, {"redis", false}, {"curl", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := readTar(t, filepath.Join(dir, tc.name+".tar"))
			var manifest []struct {
				Config   string
				RepoTags []string
			}
			if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
				t.Fatalf("manifest.json: %v %s", err, files["manifest.json"])
			}
			if len(manifest[0].RepoTags) != 1 {
				t.Errorf("tags %v, want one", manifest[0].RepoTags)
			}
			var config struct {
				Config struct {
					User       string
					Entrypoint []string
					Labels     map[string]string
				} `json:"config"`
			}
			if err := json.Unmarshal(files[manifest[0].Config], &config); err != nil {
				t.Fatalf("config %s: %v", manifest[0].Config, err)
			}
			c := config.Config
			if c.User != "65532:65532" {
				t.Errorf("runs as %q, want 65532:65532", c.User)
			}
			if len(c.Entrypoint) == 0 {
				t.Error("no entrypoint")
			}
			if c.Labels["org.opencontainers.image.title"] != tc.name || c.Labels["org.opencontainers.image.version"] == "" {
				t.Errorf("labels %v", c.Labels)
			}
			if tc.sbom {
				b, err := os.ReadFile(filepath.Join(dir, "sbom", tc.name+".spdx.json"))
				var sbom struct {
					SPDXVersion string `json:"spdxVersion"`
					Packages    []any  `json:"packages"`
				}
				if err != nil || json.Unmarshal(b, &sbom) != nil || sbom.SPDXVersion == "" || len(sbom.Packages) == 0 {
					t.Errorf("no SPDX SBOM with packages: %v", err)
				}
			}
		})
	}
}

// readTar returns the regular files of a tarball by name.
func readTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg && h.Size < 1<<20 {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
}
