//go:build unix

package safetensors

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestWriteFileHonoursUmask: models and training checkpoints are written
// with WriteFile, and must be readable by the container's user (0644 under
// the usual umask 022), not 0600 as os.CreateTemp would make them.
func TestWriteFileHonoursUmask(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	p := filepath.Join(t.TempDir(), "m.safetensors.ckpt")
	if err := WriteFile(p, sample()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o644 {
		t.Errorf("mode %v, want -rw-r--r--", got)
	}
}
