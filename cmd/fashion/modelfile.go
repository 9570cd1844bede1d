package main

import (
	"os"
	"strings"

	"github.com/fashion-classifier/fashion/internal/model"
	"github.com/fashion-classifier/fashion/internal/onnx"
)

// predictor is what every command needs of a loaded model, whatever its
// file format.
type predictor interface {
	Info() model.Info
	Predict(x []float32, n int) ([]float32, error)
}

// openModel loads the model at path; "" means $WEIGHT_PATH, else the
// embedded default model. A path ending in .onnx is an ONNX model (with
// its optional sidecar path+".json"); anything else is one of our
// safetensors model files.
func openModel(path string) (predictor, error) {
	if path == "" {
		path = os.Getenv("WEIGHT_PATH")
	}
	if isONNX(path) {
		return onnx.Open(path, onnx.Options{})
	}
	return model.Open(path, os.Getenv)
}

// isONNX reports whether path names an ONNX model file.
func isONNX(path string) bool {
	return strings.HasSuffix(strings.ToLower(path), ".onnx")
}
