package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/atomicfile"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/onnx"
	shipped "github.com/fashion-classifier/fashion/model"
)

// runExport writes one of our safetensors models in another format, so
// that it can be checked in, or served by, other runtimes.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", stderr)
	format := fs.String("format", "onnx", "output format (only onnx)")
	modelPath := fs.String("model", "", "safetensors model file (default: $WEIGHT_PATH, else the embedded model)")
	out := fs.String("out", "", "output file, e.g. model.onnx (required); a sidecar OUT.json with class names and normalisation is written beside it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *format != "onnx" {
		return fmt.Errorf("-format %q is not supported (only onnx)", *format)
	}
	if *out == "" {
		return fmt.Errorf("-out is required")
	}
	data, source, err := exportData(*modelPath)
	if err != nil {
		return err
	}
	onnxBytes, sidecar, err := exportONNX(data)
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	if err := atomicfile.WriteFile(*out, onnxBytes); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(*out+".json", sidecar); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes, ONNX opset %d) and %s from %s\n", *out, len(onnxBytes), onnx.ExportOpset, *out+".json", source)
	return nil
}

// exportData reads the safetensors model to export: path, else
// $WEIGHT_PATH, else the embedded model.
func exportData(path string) ([]byte, string, error) {
	if path == "" {
		path = os.Getenv("WEIGHT_PATH")
	}
	if path == "" {
		return shipped.Weights, "embedded model", nil
	}
	if isONNX(path) {
		return nil, "", fmt.Errorf("%s is already an ONNX model", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("reading model: %w", err)
	}
	return data, path, nil
}

// exportONNX converts a safetensors model file to ONNX bytes and its
// sidecar JSON.
func exportONNX(data []byte) ([]byte, []byte, error) {
	d, err := modelfile.Decode(data)
	if err != nil {
		return nil, nil, err
	}
	a, err := arch.LookupArch(d.Meta.Arch)
	if err != nil {
		return nil, nil, err
	}
	net := a.Build(rand.New(rand.NewPCG(0, 0)), len(d.Meta.Classes))
	if err := modelfile.Load(net, d.Weights); err != nil {
		return nil, nil, err
	}
	b, err := onnx.Export(net, onnx.ExportMeta{Name: modelfile.DefaultName, Arch: d.Meta.Arch, Classes: d.Meta.Classes,
		Mean: d.Meta.Mean, Std: d.Meta.Std, TestAccuracy: d.Meta.TestAccuracy})
	if err != nil {
		return nil, nil, err
	}
	side, err := onnx.MarshalSidecar(onnx.Sidecar{Classes: d.Meta.Classes, Mean: &d.Meta.Mean, Std: &d.Meta.Std, TestAccuracy: d.Meta.TestAccuracy})
	if err != nil {
		return nil, nil, err
	}
	return b, side, nil
}
