package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/onnx"
)

// predictor is what every command needs of a loaded model, whatever its
// file format.
type predictor interface {
	Info() modelfile.Info
	Predict(x []float32, n int) ([]float32, error)
}

// modelFlags are the flags that choose a model: -model, and for ONNX files
// (which do not record them) the input normalisation and class names.
type modelFlags struct {
	path      string
	mean, std float64
	classes   string
}

// addModelFlags registers -model, -mean, -std and -classes on fs.
func addModelFlags(fs *flag.FlagSet) *modelFlags {
	m := &modelFlags{}
	fs.StringVar(&m.path, "model", "", "model `file`: .safetensors, or .onnx (default: $WEIGHT_PATH, else the model embedded in the binary)")
	fs.Float64Var(&m.mean, "mean", 0, "ONNX models: input normalisation mean on pixel/255 (default: the model's sidecar JSON, else 0.2860)")
	fs.Float64Var(&m.std, "std", 0, "ONNX models: input normalisation std on pixel/255 (default: the sidecar, else 0.3530)")
	fs.StringVar(&m.classes, "classes", "", "ONNX models: comma-separated class names in class-id order (default: the sidecar, else Fashion-MNIST's)")
	return m
}

// open loads the chosen model. The ONNX flags are refused for our own
// model files, which carry their normalisation and classes.
func (m *modelFlags) open() (predictor, error) {
	path := m.path
	if path == "" {
		path = os.Getenv("WEIGHT_PATH")
	}
	var opts onnx.Options
	if m.classes != "" {
		opts.Classes = strings.Split(m.classes, ",")
		for i, c := range opts.Classes {
			opts.Classes[i] = strings.TrimSpace(c)
		}
	}
	opts.Mean, opts.Std = float32(m.mean), float32(m.std)
	if m.std < 0 {
		return nil, fmt.Errorf("-std must be positive, got %v", m.std)
	}
	if isONNX(path) {
		return onnx.Open(path, opts)
	}
	if m.mean != 0 || m.std != 0 || m.classes != "" {
		return nil, fmt.Errorf("-mean, -std and -classes apply to ONNX models; %s records its own", describe(path))
	}
	return modelfile.Open(path, os.Getenv)
}

func describe(path string) string {
	if path == "" {
		return "the embedded model"
	}
	return path
}

// isONNX reports whether path names an ONNX model file.
func isONNX(path string) bool {
	return strings.HasSuffix(strings.ToLower(path), ".onnx")
}
