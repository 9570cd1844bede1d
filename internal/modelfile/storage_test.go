package modelfile

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/safetensors"
	shipped "github.com/fashion-classifier/fashion/model"
)

// TestStorageF16 saves a network with F16 storage: the file is about half
// the size, says storage f16, loads as float32 weights equal to the
// originals rounded to half precision, and reports its storage.
func TestStorageF16(t *testing.T) {
	a, err := arch.LookupArch("vgg")
	if err != nil {
		t.Fatal(err)
	}
	net := a.Build(rand.New(rand.NewPCG(3, 4)), 10)
	meta := Meta{Arch: "vgg", Classes: FashionClasses, Mean: DefaultMean, Std: DefaultStd}
	full := mustEncode(t, net, meta)
	meta.Storage = StorageF16
	half := mustEncode(t, net, meta)
	if r := float64(len(half)) / float64(len(full)); r < 0.49 || r > 0.51 {
		t.Errorf("F16 file is %d bytes, F32 %d: ratio %.3f, want about 0.5", len(half), len(full), r)
	}
	for _, tc := range []struct {
		data    []byte
		storage string
		round   bool
	}{{full, StorageF32, false}, {half, StorageF16, true}} {
		d, err := Decode(tc.data)
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(d, "m", "test")
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Info().Storage; got != tc.storage {
			t.Errorf("Info().Storage = %q, want %q", got, tc.storage)
		}
		rounded := 0
		for _, p := range net.Params() {
			for i, v := range p.Value {
				want := v
				if tc.round {
					want = safetensors.RoundF16(v)
				}
				if got := d.Weights[p.Name][i]; got != want {
					t.Fatalf("%s storage: %s[%d] = %v, want %v", tc.storage, p.Name, i, got, want)
				}
				if want != v {
					rounded++
				}
			}
		}
		if tc.round && rounded == 0 {
			t.Errorf("no weight changed in F16: the test proves nothing")
		}
	}
}

// TestDecodeRejectsBadStorage: the metadata must say how the network's
// weights are stored, and F16 weights must be finite like F32 ones.
func TestDecodeRejectsBadStorage(t *testing.T) {
	file := func(edit func(f *safetensors.File)) []byte {
		f, err := safetensors.Decode(shipped.Weights)
		if err != nil {
			t.Fatal(err)
		}
		edit(f)
		var b bytes.Buffer
		if err := safetensors.Encode(&b, f); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	allHalf := func(f *safetensors.File) {
		if _, err := SetStorage(f, StorageF16); err != nil {
			t.Fatal(err)
		}
	}
	tensor := func(f *safetensors.File, name string) *safetensors.Tensor {
		for i := range f.Tensors {
			if f.Tensors[i].Name == name {
				return &f.Tensors[i]
			}
		}
		t.Fatalf("no tensor %q", name)
		return nil
	}
	tests := []struct {
		name string
		edit func(f *safetensors.File)
		want string
	}{
		{"unknown storage", func(f *safetensors.File) { f.Metadata["storage"] = "bf16" }, `storage must be "f32" or "f16", got "bf16"`},
		{"says f16, weights F32", func(f *safetensors.File) { f.Metadata["storage"] = StorageF16 }, "says storage f16 but tensor"},
		{"says f16, one weight F32", func(f *safetensors.File) { allHalf(f); tensor(f, "fc.weight").Half = false }, `says storage f16 but tensor "fc.weight" is F32`},
		{"F16 weight, no storage", func(f *safetensors.File) { f.Tensors[0].Half = true }, "is F16 but the metadata does not say storage f16"},
		{"F16 weight, says f32", func(f *safetensors.File) { f.Tensors[0].Half = true; f.Metadata["storage"] = StorageF32 }, "is F16 but the metadata"},
		{"F16 infinity", func(f *safetensors.File) { allHalf(f); f.Tensors[2].Data[5] = float32(math.Inf(-1)) }, "non-finite"},
		{"F16 NaN", func(f *safetensors.File) { allHalf(f); f.Tensors[2].Data[0] = float32(math.NaN()) }, "non-finite"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(file(tc.edit))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := Decode(file(allHalf)); err != nil {
		t.Errorf("the shipped model with F16 weights: %v", err)
	}
	if _, err := Decode(file(func(f *safetensors.File) { f.Metadata["storage"] = StorageF32 })); err != nil {
		t.Errorf("storage f32 spelled out: %v", err)
	}
}

// TestSetStorage converts the shipped model to F16 and back: only the
// network's tensors change dtype, the detector's stay F32, rounding is
// reported, and widening back to F32 changes nothing.
func TestSetStorage(t *testing.T) {
	f, err := safetensors.Decode(shipped.Weights)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := SetStorage(f, StorageF16)
	if err != nil || !changed {
		t.Fatalf("SetStorage(f16) of the float32 model: changed %v, %v; want changed", changed, err)
	}
	if f.Metadata["storage"] != StorageF16 {
		t.Errorf("metadata storage %q", f.Metadata["storage"])
	}
	for _, tn := range f.Tensors {
		if want := !strings.HasPrefix(tn.Name, ExtraPrefix); tn.Half != want {
			t.Errorf("tensor %q: Half %v, want %v", tn.Name, tn.Half, want)
		}
	}
	var b bytes.Buffer
	if err := safetensors.Encode(&b, f); err != nil {
		t.Fatal(err)
	}
	halfFile := b.Bytes()
	g, err := safetensors.Decode(halfFile)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := SetStorage(g, StorageF16); err != nil || changed {
		t.Errorf("SetStorage(f16) of an F16 file: changed %v, %v; want unchanged", changed, err)
	}
	if changed, err := SetStorage(g, StorageF32); err != nil || changed {
		t.Errorf("SetStorage(f32) of an F16 file: changed %v, %v; want unchanged (widening is exact)", changed, err)
	}
	if _, ok := g.Metadata["storage"]; ok {
		t.Errorf("an F32 file keeps metadata storage %q", g.Metadata["storage"])
	}
	for i, tn := range g.Tensors {
		if tn.Half {
			t.Errorf("tensor %q still F16", tn.Name)
		}
		for j, v := range tn.Data {
			if want := safetensors.RoundF16(f.Tensors[i].Data[j]); !strings.HasPrefix(tn.Name, ExtraPrefix) && v != want {
				t.Fatalf("%s[%d] = %v after F16 and back, want %v", tn.Name, j, v, want)
			}
		}
	}
	if _, err := SetStorage(g, "F16"); err == nil {
		t.Error("SetStorage accepted \"F16\"; the names are f32 and f16")
	}
	if _, err := Decode(halfFile); err != nil {
		t.Errorf("converted file does not decode: %v", err)
	}
}
