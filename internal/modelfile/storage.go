package modelfile

import (
	"fmt"
	"strings"

	"github.com/fashion-classifier/fashion/internal/safetensors"
)

// Storage names: how a model file stores the network's float weights.
// Either way they are float32 once loaded, and the network computes in
// float32 (or int8, see Precision): F16 storage halves the file at the
// cost of rounding every weight to 11 significant bits.
const (
	StorageF32 = "f32"
	StorageF16 = "f16"
)

// ParseStorage reads a storage name as the -storage flags and the
// "storage" metadata spell it, returning "" for StorageF32 (Meta's
// default) and StorageF16 as itself.
func ParseStorage(s string) (string, error) {
	switch s {
	case "", StorageF32:
		return "", nil
	case StorageF16:
		return StorageF16, nil
	}
	return "", fmt.Errorf("storage must be %q or %q, got %q", StorageF32, StorageF16, s)
}

// checkStorage refuses a file whose metadata says one storage and whose
// network tensors are another: half and full name a network tensor stored
// as F16 and one stored as F32 ("" when there is none).
func checkStorage(storage, half, full string) error {
	switch {
	case storage == StorageF16 && full != "":
		return fmt.Errorf("metadata says storage %s but tensor %q is F32", StorageF16, full)
	case storage == "" && half != "":
		return fmt.Errorf("tensor %q is F16 but the metadata does not say storage %s", half, StorageF16)
	}
	return nil
}

// SetStorage makes the model file f store the network's weights as
// storage (StorageF32 or StorageF16) and records it in f's metadata.
// The other float tensors, the out-of-distribution detector's and the int8
// layers' scales, stay as they are: they are small and fitted to the
// float32 values. It reports whether any stored value changes (rounding
// to F16), after which a recorded test accuracy no longer describes the
// file.
func SetStorage(f *safetensors.File, storage string) (changed bool, err error) {
	s, err := ParseStorage(storage)
	if err != nil {
		return false, err
	}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Int8 != nil || t.U8 != nil || strings.HasPrefix(t.Name, ExtraPrefix) || strings.HasPrefix(t.Name, Int8Prefix) {
			continue // a quantized ONNX model's graph (U8) is bytes, not weights
		}
		t.Half = s == StorageF16
		if !t.Half {
			continue
		}
		for _, v := range t.Data {
			if safetensors.RoundF16(v) != v {
				changed = true
				break
			}
		}
	}
	if s == "" {
		delete(f.Metadata, "storage")
	} else {
		f.Metadata["storage"] = s
	}
	return changed, nil
}
