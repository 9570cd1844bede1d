package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * 3)
	}
	return v
}

func near(a, b, tol float64) bool {
	return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b))
}

var allActs = []Act{
	{}, ReLU, {Kind: ActClip, A: -1, B: 6}, {Kind: ActSigmoid}, HardSigmoid, HardSwish, {Kind: ActLeakyReLU, A: 0.1},
}

func TestActKernelsMatchEval(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, a := range allActs {
		for _, n := range []int{1, 7, 33, 1 << 16} {
			x, dy := randVec(rng, n), randVec(rng, n)
			y, dx := make([]float32, n), make([]float32, n)
			ApplyActParallel(y, x, a)
			ActBackward(dx, dy, x, a)
			for i := range x {
				if !near(float64(y[i]), float64(a.Eval(x[i])), 1e-6) {
					t.Fatalf("%v n=%d: y[%d] = %v, want %v", a, n, i, y[i], a.Eval(x[i]))
				}
				if want := dy[i] * a.Deriv(x[i]); !near(float64(dx[i]), float64(want), 1e-6) {
					t.Fatalf("%v n=%d: dx[%d] = %v, want %v", a, n, i, dx[i], want)
				}
			}
		}
	}
}

// TestActDerivFiniteDifference checks Deriv against the slope of Eval
// away from the kinks.
func TestActDerivFiniteDifference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, a := range allActs {
		for range 200 {
			v := float32(rng.NormFloat64() * 4)
			const h = 1e-3
			lo, hi := float64(a.Eval(v-h)), float64(a.Eval(v+h))
			slope := (hi - lo) / (2 * h)
			d := float64(a.Deriv(v))
			if math.Abs(slope-d) > 0.02 && math.Abs(float64(a.Deriv(v-h))-float64(a.Deriv(v+h))) < 1e-6 {
				t.Fatalf("%v at %v: Deriv %v, finite difference %v", a, v, d, slope)
			}
		}
	}
}

func TestEpilogueMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, a := range allActs {
		for _, width := range []int{1, 3, 8, 24, 37} {
			for _, rows := range []int{1, 5, 600} {
				for _, withBias := range []bool{false, true} {
					var bias []float32
					if withBias {
						bias = randVec(rng, width)
					}
					x := randVec(rng, rows*width)
					got := append([]float32(nil), x...)
					NewEpilogue(bias, a).Apply(got)
					for i, v := range x {
						if bias != nil {
							v += bias[i%width]
						}
						if want := a.Eval(v); !near(float64(got[i]), float64(want), 1e-5) {
							t.Fatalf("%v width=%d rows=%d bias=%v: [%d] = %v, want %v", a, width, rows, withBias, i, got[i], want)
						}
					}
				}
			}
		}
	}
}
