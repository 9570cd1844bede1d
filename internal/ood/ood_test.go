package ood

import (
	"math"
	"math/rand/v2"
	"testing"
)

// blobs makes n 28×28 images of class c: a bright square whose position
// depends on the class, with noise; odd is a thin diagonal stroke instead
// (unlike every class).
func blobs(rng *rand.Rand, n, classes int, odd bool) ([]uint8, []uint8) {
	pix := make([]uint8, n*784)
	labels := make([]uint8, n)
	for i := range n {
		c := rng.IntN(classes)
		labels[i] = uint8(c)
		img := pix[i*784 : (i+1)*784]
		for j := range img {
			img[j] = uint8(rng.IntN(20))
		}
		if odd {
			for t := range 28 {
				img[t*28+t] = 255
			}
			continue
		}
		x0, y0 := 2+4*c, 4
		for y := y0; y < y0+16; y++ {
			for x := x0; x < x0+10; x++ {
				img[y*28+x] = uint8(180 + rng.IntN(60))
			}
		}
	}
	return pix, labels
}

func TestDetectorSeparates(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const k = 4
	pix, labels := blobs(rng, 2000, k, false)
	d, err := Fit(pix, labels, k)
	if err != nil {
		t.Fatal(err)
	}
	// Logits: confident for in-distribution, flat for odd images.
	logitsFor := func(labels []uint8, odd bool) []float32 {
		out := make([]float32, len(labels)*k)
		for i, l := range labels {
			if !odd {
				out[i*k+int(l)] = 8 + float32(rng.Float64())
			}
		}
		return out
	}
	held, heldLabels := blobs(rng, 500, k, false)
	if err := d.Calibrate(held, logitsFor(heldLabels, false), 0.95, "synthetic"); err != nil {
		t.Fatal(err)
	}
	in, inLabels := blobs(rng, 500, k, false)
	out, outLabels := blobs(rng, 500, k, true)
	var si, so []float64
	inLogits, outLogits := logitsFor(inLabels, false), logitsFor(outLabels, true)
	for i := range 500 {
		si = append(si, d.Score(in[i*784:(i+1)*784], inLogits[i*k:(i+1)*k]))
		so = append(so, d.Score(out[i*784:(i+1)*784], outLogits[i*k:(i+1)*k]))
	}
	if a := AUROC(si, so); a < 0.99 {
		t.Errorf("AUROC %.4f, want ≥ 0.99", a)
	}
	kept := 0
	for _, s := range si {
		if d.InDistribution(s) {
			kept++
		}
	}
	if kept < 440 || kept > 500 {
		t.Errorf("kept %d of 500 fresh in-distribution images at a 95%% threshold", kept)
	}
	// Round trip through the model-file form.
	norm, err := UnmarshalNorm(MarshalNorm(d.Norm))
	if err != nil {
		t.Fatal(err)
	}
	d2, err := FromTensors(d.Tensors(), norm, k)
	if err != nil {
		t.Fatal(err)
	}
	if s1, s2 := d.Score(out[:784], outLogits[:k]), d2.Score(out[:784], outLogits[:k]); s1 != s2 {
		t.Errorf("score %v after round trip, %v before", s2, s1)
	}
	if _, err := FromTensors(d.Tensors(), norm, k+1); err == nil {
		t.Error("FromTensors accepted the wrong class count")
	}
	bad := d.Tensors()
	bad["ood/precision"][3] = float32(math.NaN())
	if _, err := FromTensors(bad, norm, k); err == nil {
		t.Error("FromTensors accepted NaN")
	}
}

func TestAUROC(t *testing.T) {
	if a := AUROC([]float64{1, 2, 3}, []float64{4, 5}); a != 1 {
		t.Errorf("separated: %v", a)
	}
	if a := AUROC([]float64{1, 2}, []float64{1, 2}); a != 0.5 {
		t.Errorf("identical: %v", a)
	}
	if e := Energy([]float32{0, 0}); math.Abs(e+math.Log(2)) > 1e-12 {
		t.Errorf("energy of two zeros %v, want −ln 2", e)
	}
}

// TestWhitenedDistanceMatchesQuadraticForm checks the Cholesky path that
// parts uses against the plain (v−m)ᵀ·P·(v−m) on a random positive
// definite precision matrix.
func TestWhitenedDistanceMatchesQuadraticForm(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	a := make([]float64, dim*dim)
	for i := range a {
		a[i] = rng.NormFloat64() / dim
	}
	d := &Detector{Precision: make([]float32, dim*dim)}
	for i := range dim {
		for j := range dim {
			var s float64
			for k := range dim {
				s += a[k*dim+i] * a[k*dim+j]
			}
			if i == j {
				s += 0.5
			}
			d.Precision[i*dim+j] = float32(s)
		}
	}
	for range 3 {
		m := make([]float32, dim)
		for j := range m {
			m[j] = float32(rng.Float64() * 255)
		}
		d.Means = append(d.Means, m)
	}
	if err := d.whiten(); err != nil {
		t.Fatal(err)
	}
	pix := make([]uint8, 784)
	for i := range pix {
		pix[i] = uint8(rng.IntN(256))
	}
	var v [dim]float64
	reduce(v[:], pix)
	best := math.Inf(1)
	for _, m := range d.Means {
		var s float64
		for i := range dim {
			for j := range dim {
				s += (v[i] - float64(m[i])) * float64(d.Precision[i*dim+j]) * (v[j] - float64(m[j]))
			}
		}
		best = min(best, s)
	}
	got, _ := d.parts(pix, []float32{1, 2, 3})
	if want := math.Log1p(best); math.Abs(got-want) > 1e-9*max(1, math.Abs(want)) {
		t.Fatalf("whitened log distance %v, quadratic form gives %v", got, want)
	}
	bad := &Detector{Precision: make([]float32, dim*dim)}
	if err := bad.whiten(); err == nil {
		t.Fatal("a zero precision matrix was accepted")
	}
}
