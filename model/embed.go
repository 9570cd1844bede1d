// Package model holds the shipped default model: the weights of the
// network trained by `fashion train` (see README.md in this directory for
// the exact command, accuracy and training curves), embedded into every
// binary so that eval, predict and serve work with no files at hand.
package model

import _ "embed"

// Weights is the safetensors file of the default model.
//
//go:embed fashion-mnist.safetensors
var Weights []byte
