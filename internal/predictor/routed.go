package predictor

import (
	"fmt"

	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// Routed is two models served as one, each answering the inputs it was
// trained for: Benchmark answers dataset-like images (28×28 with a dark
// background, imageprep.Input.DatasetLike: Fashion-MNIST's own kind of
// image) and Photo every other image (photos, converted by imageprep). It
// is what Open returns for the embedded default, and with
// Options.PhotoPath.
//
// As a Predictor it is Benchmark: Info describes Benchmark, and Predict,
// whose inputs are already normalised 28×28 tensors (evaluation on the
// test set, the OIP tensor routes), runs Benchmark. Callers that start
// from images pick the answering model per image with For.
type Routed struct {
	Benchmark, Photo Predictor
}

// NewRouted pairs a benchmark and a photo model. Their serving names must
// differ: both are served, and answers name the model that gave them.
func NewRouted(benchmark, photo Predictor) (*Routed, error) {
	if benchmark == nil || photo == nil {
		return nil, fmt.Errorf("predictor: a routed pair needs both models")
	}
	if b, p := benchmark.Info().Name, photo.Info().Name; b == p {
		return nil, fmt.Errorf("predictor: the benchmark and the photo model are both named %q", b)
	}
	return &Routed{Benchmark: benchmark, Photo: photo}, nil
}

// Info describes the benchmark model.
func (r *Routed) Info() modelfile.Info { return r.Benchmark.Info() }

// Predict runs the benchmark model on normalised 28×28 inputs.
func (r *Routed) Predict(x []float32, n int) ([]float32, error) { return r.Benchmark.Predict(x, n) }

// For returns the model that answers an input: Benchmark when it is
// dataset-like, else Photo.
func (r *Routed) For(datasetLike bool) Predictor {
	if datasetLike {
		return r.Benchmark
	}
	return r.Photo
}

// For returns the model of p that answers an input, given whether the
// input is dataset-like (imageprep.Input.DatasetLike): for a *Routed its
// benchmark or photo model, for any other Predictor p itself, which then
// answers everything.
func For(p Predictor, datasetLike bool) Predictor {
	if r, ok := p.(*Routed); ok {
		return r.For(datasetLike)
	}
	return p
}

// Models lists the models that may answer for p: a *Routed's benchmark and
// photo model, in that order, or p alone.
func Models(p Predictor) []Predictor {
	if r, ok := p.(*Routed); ok {
		return []Predictor{r.Benchmark, r.Photo}
	}
	return []Predictor{p}
}
