package main

import (
	"os"

	"github.com/fashion-classifier/fashion/internal/model"
)

// predictor is what every command needs of a loaded model, whatever its
// file format.
type predictor interface {
	Info() model.Info
	Predict(x []float32, n int) ([]float32, error)
}

// openModel loads the model at path; "" means $WEIGHT_PATH, else the
// embedded default model.
func openModel(path string) (predictor, error) {
	return model.Open(path, os.Getenv)
}
