package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/atomicfile"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/onnx"
	"github.com/fashion-classifier/fashion/internal/predictor"
)

// runExport writes one of our safetensors models in another format, so
// that it can be checked in, or served by, other runtimes.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", stderr)
	format := fs.String("format", "onnx", "output format (only onnx)")
	models := &modelFlags{}
	fs.StringVar(&models.path, "model", "", "our model `file` (safetensors; default: $WEIGHT_PATH, else the embedded model)")
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
	if models.photo != "" {
		return fmt.Errorf("-photo-model: export writes one model; name it with -model")
	}
	p, err := models.open(ctx)
	if err != nil {
		return err
	}
	// The embedded default is two models; the benchmark model is the one
	// that answers tensors, the only input an exported graph takes.
	p = predictor.For(p, true)
	c, ok := p.(*modelfile.Classifier)
	if !ok && p.Info().Precision == modelfile.PrecisionInt8 {
		return fmt.Errorf("%s is an int8 model quantized from an ONNX model, without float32 weights; export needs a float32 model", p.Info().Source)
	}
	if !ok {
		return fmt.Errorf("%s is already an ONNX model", p.Info().Source)
	}
	source := c.Info().Source
	if err := c.Decoded().NeedsFloat32(); err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	onnxBytes, sidecar, err := exportONNX(c.Decoded())
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

// exportONNX converts one of our model files to ONNX bytes and its sidecar
// JSON.
func exportONNX(d *modelfile.Decoded) ([]byte, []byte, error) {
	a, err := arch.LookupArch(d.Meta.Arch)
	if err != nil {
		return nil, nil, err
	}
	net := a.Build(rand.New(rand.NewPCG(0, 0)), len(d.Meta.Classes))
	if err := modelfile.Load(net, d.Weights); err != nil {
		return nil, nil, err
	}
	b, err := onnx.Export(net, onnx.ExportMeta{Name: modelfile.DefaultName, Arch: d.Meta.Arch, Classes: d.Meta.Classes,
		Mean: d.Meta.Mean, Std: d.Meta.Std, TestAccuracy: d.Meta.TestAccuracy, Temperature: d.Meta.Temperature})
	if err != nil {
		return nil, nil, err
	}
	side, err := onnx.MarshalSidecar(onnx.Sidecar{Classes: d.Meta.Classes, Mean: &d.Meta.Mean, Std: &d.Meta.Std,
		TestAccuracy: d.Meta.TestAccuracy, Temperature: d.Meta.Temperature})
	if err != nil {
		return nil, nil, err
	}
	return b, side, nil
}
