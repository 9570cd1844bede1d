package onnx

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// TestNativeAndONNXProgramsMatch checks that our VGG-w32 model file compiled
// natively, its own ONNX export, and PyTorch's export of the same
// architecture compile to the same steps: the same kernels (Winograd,
// direct, im2col, packed products) on the same shapes with the same
// fused activations. A front end that stopped folding a batch norm,
// fusing a ReLU or choosing a fast kernel would make one path slower than
// the other without changing its outputs.
func TestNativeAndONNXProgramsMatch(t *testing.T) {
	// Our VGG-w32, the architecture of PyTorch's export (the embedded
	// default is a ResNet-20).
	file, err := os.ReadFile(filepath.Join("..", "..", "model", "vgg-w32.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := modelfile.Decode(file)
	if err != nil {
		t.Fatal(err)
	}
	native, err := modelfile.New(dec, "vgg-w32", "model/vgg-w32.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	want := native.Program().Describe()
	for _, kernel := range []string{"direct3x3", "winograd", "packed=true"} {
		if !slices.ContainsFunc(want, func(s string) bool { return strings.Contains(s, kernel) }) {
			t.Errorf("native program uses no %s step:\n%s", kernel, strings.Join(want, "\n"))
		}
	}
	net, meta := netOf(t, file)
	data, err := Export(net, ExportMeta{Arch: meta.Arch, Classes: meta.Classes, Mean: meta.Mean, Std: meta.Std})
	if err != nil {
		t.Fatal(err)
	}
	exported, err := Decode(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	models := map[string]*Model{"our export": exported}
	path := datatest.SharedPath(t, "models/vgg_w32_fmnist.onnx")
	if models["PyTorch's export"], err = decodeFile(path, Options{}); err != nil {
		t.Fatal(err)
	}
	for name, m := range models {
		if got := m.Program().Describe(); !slices.Equal(got, want) {
			t.Errorf("%s compiles to\n%s\nthe native model to\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}
