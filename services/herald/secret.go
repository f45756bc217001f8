package herald

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// secret returns the secret kept in the file at path. If there is none, it
// makes one (24 random bytes, hex) in a new file of mode 0600 when create
// is set, and returns "" otherwise. A file that others may read is refused:
// its secret may have leaked.
func secret(path string, create bool) (string, error) {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if !create {
			return "", nil
		}
		b := make([]byte, 24)
		_, _ = rand.Read(b) // never fails (crypto/rand)
		s := hex.EncodeToString(b)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", fmt.Errorf("herald: %w", err)
		}
		if _, err := f.WriteString(s); err != nil {
			f.Close()
			return "", fmt.Errorf("herald: %w", err)
		}
		if err := f.Close(); err != nil {
			return "", fmt.Errorf("herald: %w", err)
		}
		return s, nil
	case err != nil:
		return "", fmt.Errorf("herald: %w", err)
	case info.Mode().Perm()&0o077 != 0:
		return "", fmt.Errorf("herald: %s is open to other users (mode %v): chmod 600 it", path, info.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("herald: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("herald: %s is empty", path)
	}
	return s, nil
}
