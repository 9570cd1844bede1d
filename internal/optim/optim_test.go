package optim

import (
	"math"
	"testing"

	"github.com/fashion-classifier/fashion/internal/nn"
)

// quadratic returns a parameter at x0 whose loss is ½·x², so the gradient
// is x itself.
func quadratic(kind nn.ParamKind, x0 float32) *nn.Param {
	return &nn.Param{Name: "x", Kind: kind, Value: []float32{x0}, Grad: []float32{x0}}
}

func TestSGDMatchesHandComputed(t *testing.T) {
	tests := []struct {
		name string
		opt  SGD
		want []float32 // value after each of three steps, lr 0.1, start 1
	}{
		// plain: x ← x − 0.1x
		{"plain", SGD{}, []float32{0.9, 0.81, 0.729}},
		// momentum 0.5: v=1 → x=0.9; v=0.5+0.9=1.4 → x=0.76; v=0.7+0.76=1.46 → x=0.614
		{"momentum", SGD{Momentum: 0.5}, []float32{0.9, 0.76, 0.614}},
		// nesterov: step uses g + μv: v=1, g'=1.5 → 0.85; v=0.5+0.85=1.35, g'=0.85+0.675=1.525 → 0.6975
		{"nesterov", SGD{Momentum: 0.5, Nesterov: true}, []float32{0.85, 0.6975}},
		// weight decay 1 doubles the gradient: x ← x − 0.1·2x
		{"decay", SGD{WeightDecay: 1}, []float32{0.8, 0.64}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := quadratic(nn.Weight, 1)
			for i, want := range tc.want {
				p.Grad[0] = p.Value[0]
				tc.opt.Step([]*nn.Param{p}, 0.1)
				if math.Abs(float64(p.Value[0]-want)) > 1e-6 {
					t.Fatalf("step %d: x = %v, want %v", i+1, p.Value[0], want)
				}
			}
		})
	}
}

func TestNoDecayAndBuffers(t *testing.T) {
	bias := quadratic(nn.NoDecay, 1)
	buf := &nn.Param{Name: "b", Kind: nn.Buffer, Value: []float32{5}}
	o := SGD{WeightDecay: 1}
	o.Step([]*nn.Param{bias, buf}, 0.1)
	if bias.Value[0] != 0.9 {
		t.Errorf("bias = %v, want 0.9 (no decay)", bias.Value[0])
	}
	if buf.Value[0] != 5 {
		t.Errorf("buffer changed to %v", buf.Value[0])
	}
}

func TestAdamWConverges(t *testing.T) {
	p := quadratic(nn.NoDecay, 3)
	o := NewAdamW(0)
	for range 2000 {
		p.Grad[0] = p.Value[0]
		o.Step([]*nn.Param{p}, 0.01)
	}
	if math.Abs(float64(p.Value[0])) > 1e-2 {
		t.Errorf("x = %v after 2000 steps, want ≈ 0", p.Value[0])
	}
	// The first Adam step moves by lr·sign(g), whatever the gradient's scale.
	q := quadratic(nn.NoDecay, 1000)
	NewAdamW(0).Step([]*nn.Param{q}, 0.5)
	if math.Abs(float64(q.Value[0]-999.5)) > 1e-3 {
		t.Errorf("first step to %v, want 999.5", q.Value[0])
	}
}

func TestSchedules(t *testing.T) {
	oc := OneCycle{Max: 0.1, Total: 100}
	if got := oc.LR(0); math.Abs(float64(got)-0.004) > 1e-6 {
		t.Errorf("one-cycle start %v, want 0.1/25", got)
	}
	if got := oc.LR(29); math.Abs(float64(got)-0.1) > 1e-6 {
		t.Errorf("one-cycle peak %v, want 0.1", got)
	}
	if got := oc.LR(99); math.Abs(float64(got)-0.1/25/1e4) > 1e-9 {
		t.Errorf("one-cycle end %v, want 4e-7", got)
	}
	for s := 30; s < 99; s++ {
		if oc.LR(s+1) > oc.LR(s) {
			t.Fatalf("one-cycle rises after the peak at step %d", s)
		}
	}
	c := Cosine{Base: 1, Total: 10, Warmup: 2}
	if c.LR(0) != 0.5 || c.LR(1) != 1 {
		t.Errorf("warm-up %v %v, want 0.5 1", c.LR(0), c.LR(1))
	}
	if got := c.LR(6); math.Abs(float64(got)-0.5) > 1e-6 {
		t.Errorf("cosine midpoint %v, want 0.5", got)
	}
}

// TestSplitUpdateMatchesSerial checks that an update large enough to be
// split between goroutines gives bit-for-bit the values of updating each
// parameter on its own (small enough to run serially), for both
// optimisers over several steps.
func TestSplitUpdateMatchesSerial(t *testing.T) {
	sizes := []int{40001, 30000, 7, rangeLen + 1}
	kinds := []nn.ParamKind{nn.Weight, nn.NoDecay, nn.Weight, nn.Weight}
	newParams := func() []*nn.Param {
		var ps []*nn.Param
		for i, n := range sizes {
			p := &nn.Param{Name: string(rune('a' + i)), Kind: kinds[i], Value: make([]float32, n), Grad: make([]float32, n)}
			for j := range p.Value {
				p.Value[j] = float32(math.Sin(float64(i*n + j)))
			}
			ps = append(ps, p)
		}
		return ps
	}
	setGrads := func(ps []*nn.Param, step int) {
		for i, p := range ps {
			for j := range p.Grad {
				p.Grad[j] = float32(math.Cos(float64(step*7+i*3+j))) + p.Value[j]
			}
		}
	}
	for _, tc := range []struct {
		name string
		opt  func() Optimizer
	}{
		{"sgd", func() Optimizer { return &SGD{Momentum: 0.9, Nesterov: true, WeightDecay: 5e-4} }},
		{"adamw", func() Optimizer { return NewAdamW(0.05) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if total := 40001 + 30000 + 7 + rangeLen + 1; total < parallelMinValues {
				t.Fatalf("%d values do not reach the parallel path", total)
			}
			whole, parts := newParams(), newParams()
			opt := tc.opt()
			single := make([]Optimizer, len(parts))
			for i := range single {
				single[i] = tc.opt()
			}
			for step := range 3 {
				setGrads(whole, step)
				setGrads(parts, step)
				opt.Step(whole, 0.01)
				for i, p := range parts {
					single[i].Step([]*nn.Param{p}, 0.01)
				}
				for i := range whole {
					for j, v := range whole[i].Value {
						if w := parts[i].Value[j]; math.Float32bits(v) != math.Float32bits(w) {
							t.Fatalf("step %d: param %d[%d] = %v split, %v alone", step, i, j, v, w)
						}
					}
				}
			}
		})
	}
}
