package repository

import (
	"fmt"
	"strings"

	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/onnx"
)

// Predictor is a loaded model file: its description and a batched forward
// pass. It is what Open returns and what a server's LoadFunc prepares.
type Predictor interface {
	Info() modelfile.Info
	Predict(x []float32, n int) ([]float32, error)
}

// Open loads the model file of s: an ONNX file with the normalisation and
// class names of its config.json (else its sidecar, else Fashion-MNIST's),
// or one of our safetensors files, which record their own and so refuse
// config.json overrides. The model is named s.Name.
func Open(s Spec) (Predictor, error) {
	c := s.Config
	if strings.HasSuffix(strings.ToLower(s.Path), ".onnx") {
		opts := onnx.Options{Name: s.Name, Classes: c.Classes}
		if c.Mean != nil {
			opts.Mean = *c.Mean
		}
		if c.Std != nil {
			opts.Std = *c.Std
		}
		return onnx.Open(s.Path, opts)
	}
	if c.Mean != nil || c.Std != nil || c.Classes != nil {
		return nil, fmt.Errorf("%s records its own normalisation and classes; config.json may not set mean, std or classes for it", s.Path)
	}
	return modelfile.Open(s.Path, nil)
}
