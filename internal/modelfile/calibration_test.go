package modelfile

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/fashion-classifier/fashion/internal/ood"
	"github.com/fashion-classifier/fashion/internal/safetensors"
	shipped "github.com/fashion-classifier/fashion/model"
)

// calibrated returns the shipped model file with a temperature and a
// detector fitted on random images.
func calibrated(t *testing.T, temperature string) []byte {
	t.Helper()
	f, err := safetensors.Decode(shipped.Weights)
	if err != nil {
		t.Fatal(err)
	}
	kept := f.Tensors[:0]
	for _, x := range f.Tensors {
		if len(x.Name) < 4 || x.Name[:4] != ExtraPrefix {
			kept = append(kept, x)
		}
	}
	f.Tensors = kept
	rng := rand.New(rand.NewPCG(1, 1))
	pix := make([]uint8, 400*784)
	labels := make([]uint8, 400)
	for i := range pix {
		pix[i] = uint8(rng.IntN(256))
	}
	for i := range labels {
		labels[i] = uint8(i % 10)
	}
	d, err := ood.Fit(pix, labels, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Calibrate(pix, make([]float32, 400*10), 0.9, "test"); err != nil {
		t.Fatal(err)
	}
	for name, v := range d.Tensors() {
		f.Tensors = append(f.Tensors, safetensors.Tensor{Name: name, Shape: []int{len(v)}, Data: v})
	}
	f.Metadata["temperature"] = temperature
	f.Metadata["ood"] = ood.MarshalNorm(d.Norm)
	var b bytes.Buffer
	if err := safetensors.Encode(&b, f); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCalibratedModel(t *testing.T) {
	d, err := Decode(calibrated(t, "2"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Meta.Temperature != 2 || len(d.Extra) != 2 {
		t.Fatalf("temperature %v, %d extra tensors", d.Meta.Temperature, len(d.Extra))
	}
	c, err := New(d, "x", "test")
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 2*Pixels)
	probs, scores, err := c.Scores(x, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) != 20 || len(scores) != 2 {
		t.Fatalf("%d probabilities and %d scores for 2 images", len(probs), len(scores))
	}
	if _, ok := c.InDistribution(scores[0]); !ok {
		t.Error("a calibrated model gives no in-distribution answer")
	}
	// Temperature 2 flattens the probabilities of the uncalibrated model.
	plain, err := Decode(shipped.Weights)
	if err != nil {
		t.Fatal(err)
	}
	pc, _ := New(plain, "x", "test")
	raw, _ := pc.Predict(x[:Pixels], 1)
	var maxRaw, maxCal float32
	for i := range 10 {
		maxRaw, maxCal = max(maxRaw, raw[i]), max(maxCal, probs[i])
	}
	if !(maxCal < maxRaw) {
		t.Errorf("top probability %v at T=2, %v at T=1", maxCal, maxRaw)
	}
	for _, bad := range []string{"0", "-1", "abc", "1000"} {
		if _, err := Decode(calibrated(t, bad)); err == nil {
			t.Errorf("temperature %q accepted", bad)
		}
	}
}
