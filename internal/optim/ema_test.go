package optim

import (
	"math"
	"testing"

	"github.com/fashion-classifier/fashion/internal/nn"
)

func TestEMAFollowsTheWeights(t *testing.T) {
	w := &nn.Param{Name: "w", Kind: nn.Weight, Value: []float32{0, 10}, Grad: []float32{0, 0}}
	buf := &nn.Param{Name: "running_var", Kind: nn.Buffer, Value: []float32{1}}
	params := []*nn.Param{w, buf}
	e := NewEMA(0.9)
	// Constant weights: the average is exactly them from the first update.
	e.Update(params)
	// Then the weights jump; the average moves towards them geometrically.
	w.Value[0], w.Value[1], buf.Value[0] = 1, 20, 3
	for range 200 {
		e.Update(params)
	}
	got := []*nn.Param{{Name: "w", Value: make([]float32, 2)}, {Name: "running_var", Value: make([]float32, 1)}}
	e.CopyTo(got)
	for i, want := range []float32{1, 20} {
		if math.Abs(float64(got[0].Value[i]-want)) > 1e-3 {
			t.Errorf("average of w[%d] = %v after 200 steps at %v, want ≈ %v", i, got[0].Value[i], want, want)
		}
	}
	if math.Abs(float64(got[1].Value[0]-3)) > 1e-3 {
		t.Errorf("buffers are averaged too: got %v, want ≈ 3", got[1].Value[0])
	}

	// One step after a jump moves the average by (1−decay) of the gap, once
	// the warm-up (1+t)/(10+t) exceeds the decay.
	w.Value[0] = 2
	e.Update(params)
	e.CopyTo(got)
	if want := float32(0.9*1 + 0.1*2); math.Abs(float64(got[0].Value[0]-want)) > 1e-5 {
		t.Errorf("after a jump from 1 to 2 the average is %v, want %v", got[0].Value[0], want)
	}
}

func TestEMAStateRoundTrip(t *testing.T) {
	p := &nn.Param{Name: "w", Kind: nn.Weight, Value: []float32{1, 2, 3}}
	e := NewEMA(0.99)
	for i := range 5 {
		p.Value[0] = float32(i)
		e.Update([]*nn.Param{p})
	}
	saved := map[string][]float32{}
	for k, v := range e.State([]*nn.Param{p}) {
		saved[k] = append([]float32(nil), v...)
	}
	if s := saved["ema.steps"]; len(s) != 1 || s[0] != 5 {
		t.Fatalf("saved step count %v, want [5]", s)
	}
	f := NewEMA(0.99)
	for k, v := range f.State([]*nn.Param{p}) {
		copy(v, saved[k])
	}
	f.SetSteps(int(saved["ema.steps"][0]))
	p.Value[0] = 100
	e.Update([]*nn.Param{p})
	f.Update([]*nn.Param{p})
	a, b := []*nn.Param{{Name: "w", Value: make([]float32, 3)}}, []*nn.Param{{Name: "w", Value: make([]float32, 3)}}
	e.CopyTo(a)
	f.CopyTo(b)
	for i := range 3 {
		if a[0].Value[i] != b[0].Value[i] {
			t.Errorf("restored average diverges at %d: %v vs %v", i, b[0].Value[i], a[0].Value[i])
		}
	}
}
