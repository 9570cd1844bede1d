package predictor

import (
	"math"
	"testing"

	"github.com/fashion-classifier/fashion/internal/modelfile"
)

const side = modelfile.Side

// mirrorProbe is a predictor whose answer for an image is the mean of its
// left and right halves' pixels, as two "probabilities".
type mirrorProbe struct{ calls, images int }

func (m *mirrorProbe) Info() modelfile.Info {
	return modelfile.Info{Classes: []string{"left", "right"}}
}

func (m *mirrorProbe) Predict(x []float32, n int) ([]float32, error) {
	m.calls++
	m.images += n
	out := make([]float32, 2*n)
	for i := range n {
		for r := range side {
			row := x[i*modelfile.Pixels+r*side : i*modelfile.Pixels+(r+1)*side]
			for c, v := range row {
				out[2*i+c*2/side] += v / (modelfile.Pixels / 2)
			}
		}
	}
	return out, nil
}

func TestFlipTTAAveragesImageAndMirror(t *testing.T) {
	const n = 3
	x := make([]float32, n*modelfile.Pixels)
	for i := range n {
		for r := range side {
			for c := range side / 2 {
				x[i*modelfile.Pixels+r*side+c] = float32(i + 1) // left half only
			}
		}
	}
	p := &mirrorProbe{}
	got, err := FlipTTA(p).Predict(x, n)
	if err != nil {
		t.Fatal(err)
	}
	if p.calls != 1 || p.images != 2*n {
		t.Errorf("wrapped predictor saw %d calls of %d images, want one call of %d", p.calls, p.images, 2*n)
	}
	for i := range n {
		// Left half i+1, right half 0; mirrored: the reverse. Mean of both.
		want := float32(i+1) / 2
		if math.Abs(float64(got[2*i]-want)) > 1e-5 || math.Abs(float64(got[2*i+1]-want)) > 1e-5 {
			t.Errorf("image %d: got %v, want [%v %v]", i, got[2*i:2*i+2], want, want)
		}
	}
	if _, err := FlipTTA(p).Predict(x[:5], 1); err == nil {
		t.Error("wrong input length accepted")
	}
	if out, err := FlipTTA(p).Predict(nil, 0); err != nil || len(out) != 0 {
		t.Errorf("empty batch: %v, %v", out, err)
	}
}
