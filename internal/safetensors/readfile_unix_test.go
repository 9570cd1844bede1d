//go:build unix

package safetensors

import (
	"errors"
	"testing"

	"github.com/fashion-classifier/fashion/internal/safefile"
)

// A checkpoint path naming a device is refused, not read until memory
// runs out.
func TestReadFileRefusesDevices(t *testing.T) {
	if _, err := ReadFile("/dev/zero"); !errors.Is(err, safefile.ErrNotRegular) {
		t.Fatalf("ReadFile(/dev/zero) error = %v, want safefile.ErrNotRegular", err)
	}
}
