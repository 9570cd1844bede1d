package repository

import (
	"context"

	"github.com/fashion-classifier/fashion/internal/predictor"
)

// Predictor is a loaded model file: its description and a batched forward
// pass. It is what Open returns and what a server's LoadFunc prepares.
type Predictor = predictor.Predictor

// Open loads the model file of s through predictor.Open, the one opener of
// model files: an ONNX file with the normalisation and class names of its
// config.json (else its sidecar, else Fashion-MNIST's), or one of our
// safetensors files, which record their own and so refuse config.json
// overrides. The model is named s.Name.
func Open(ctx context.Context, s Spec) (Predictor, error) {
	c := s.Config
	opts := predictor.Options{Name: s.Name, Classes: c.Classes}
	if c.Mean != nil {
		opts.Mean = *c.Mean
	}
	if c.Std != nil {
		opts.Std = *c.Std
	}
	return predictor.Open(ctx, s.Path, opts)
}
