package nn

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestFoldBatchNormMatchesInference(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	bnrelu := NewBatchNorm(6)
	bnrelu.ReLU = true
	inner := NewSequential(NewConv2D(rng, 6, 6, 1, 1, 0, false), NewBatchNorm(6))
	net := NewSequential(
		NewConv2D(rng, 3, 6, 3, 1, 1, false), bnrelu,
		NewResidual(inner),
		NewConv2D(rng, 6, 4, 3, 2, 1, true), NewBatchNorm(4), NewActivation(HardSwish),
	)
	// Train a few batches so the running statistics are not trivial.
	for range 3 {
		net.Forward(randTensor(rng, 4, 7, 7, 3), true)
	}
	for _, p := range net.Params() {
		if p.Kind == NoDecay {
			for i := range p.Value {
				p.Value[i] += float32(rng.NormFloat64() * 0.3)
			}
		}
	}
	x := randTensor(rng, 3, 7, 7, 3)
	want := append([]float32(nil), net.Forward(x, false).Data...)
	folded := FoldBatchNorm(net)
	got := folded.Forward(x, false).Data
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-4*math.Max(1, math.Abs(float64(want[i]))) {
			t.Fatalf("output %d: folded %v, unfolded %v", i, got[i], want[i])
		}
	}
	if n := len(folded.Layers); n != 4 {
		t.Errorf("folded network has %d layers, want 4 (two batch norms gone)", n)
	}
}
