// Package model holds the shipped models, embedded into every binary so
// that eval, predict and serve work with no files at hand: the benchmark
// model, trained by `fashion train` on Fashion-MNIST (see README.md in this
// directory for the exact command, accuracy and training curves), and the
// photo model, the same network fine-tuned on photos, which answers the
// inputs that are not Fashion-MNIST-style images (README.md, "Which model
// answers").
package model

import _ "embed"

// Weights is the safetensors file of the benchmark model, which answers
// dataset-like inputs (28×28, dark background) and every tensor input.
//
//go:embed fashion-mnist.safetensors
var Weights []byte

// PhotoWeights is the safetensors file of the photo model, which answers
// every other image (photos).
//
//go:embed photos.safetensors
var PhotoWeights []byte
