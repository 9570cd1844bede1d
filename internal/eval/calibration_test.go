package eval

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestFitTemperatureRecoversScale(t *testing.T) {
	// Labels drawn from softmax(z); the model reports 2.5·z, so the
	// temperature that calibrates it is 2.5.
	rng := rand.New(rand.NewPCG(7, 8))
	const n, k = 20000, 5
	s := Scored{K: k, Logits: make([]float32, n*k)}
	p := make([]float64, k)
	for r := range n {
		z := make([]float32, k)
		for i := range z {
			z[i] = float32(rng.NormFloat64() * 2)
		}
		softmaxT(p, z, 1)
		u, c := rng.Float64(), 0
		for c < k-1 && u > p[c] {
			u -= p[c]
			c++
		}
		for i := range z {
			s.Logits[r*k+i] = 2.5 * z[i]
		}
		s.Right = append(s.Right, []int{c})
	}
	temp, err := FitTemperature(s)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(temp-2.5) > 0.1 {
		t.Errorf("temperature %.3f, want 2.5", temp)
	}
	c1, r1 := s.Confidences(1)
	_, before := Reliability(c1, r1, 15)
	ct, rt := s.Confidences(temp)
	bins, after := Reliability(ct, rt, 15)
	if !(after < 0.02 && before > 3*after) {
		t.Errorf("ECE %.4f before, %.4f after", before, after)
	}
	total := 0
	for _, b := range bins {
		total += b.N
	}
	if total != n {
		t.Errorf("bins hold %d of %d predictions", total, n)
	}
}

func TestReliabilityPerfect(t *testing.T) {
	conf := []float64{1, 1, 0.5, 0.5}
	right := []bool{true, true, true, false}
	_, ece := Reliability(conf, right, 10)
	if ece != 0 {
		t.Errorf("ECE %v, want 0", ece)
	}
}
