package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fashion-classifier/fashion/internal/kernels"
)

func randTensor(rng *rand.Rand, n, h, w, c int) *Tensor {
	t := NewTensor(n, h, w, c)
	for i := range t.Data {
		t.Data[i] = float32(rng.NormFloat64())
	}
	return t
}

// probe is L = Σ r·f(x) for a fixed random r, so dL/dy = r.
func probe(l Layer, x *Tensor, r []float32) float64 {
	y := l.Forward(x, true)
	var s float64
	for i, v := range y.Data {
		s += float64(v) * float64(r[i])
	}
	return s
}

// checkGrad compares a layer's analytic gradients (input and parameters)
// with central finite differences at up to 40 random coordinates each, of
// step h (0 for the default, 1e-3).
func checkGrad(t *testing.T, l Layer, x *Tensor, wantInputGrad bool, h float64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	y := l.Forward(x, true)
	r := make([]float32, len(y.Data))
	for i := range r {
		r[i] = float32(rng.NormFloat64())
	}
	dy := &Tensor{N: y.N, H: y.H, W: y.W, C: y.C, Data: append([]float32(nil), r...)}
	dx := l.Backward(dy)
	var dxc []float32
	if dx != nil {
		dxc = append([]float32(nil), dx.Data...)
	}
	params := l.Params()
	grads := make([][]float32, len(params))
	for i, p := range params {
		if p.Kind != Buffer {
			grads[i] = append([]float32(nil), p.Grad...)
		}
	}
	// A small step keeps the chance of crossing a ReLU or max-pool kink
	// low; the probe sums in float64, so float32 rounding stays well below
	// the tolerance. Winograd F(4×4) rounds ten times more than a direct
	// sum: its linear layers take a larger step, exact for a linear map.
	if h == 0 {
		h = 1e-3
	}
	l0 := probe(l, x, r)
	check := func(name string, vals []float32, analytic []float32) {
		t.Helper()
		kinks := 0
		trials := min(40, len(vals))
		for range trials {
			i := rng.IntN(len(vals))
			old := vals[i]
			vals[i] = old + float32(h)
			lp := probe(l, x, r)
			vals[i] = old - float32(h)
			lm := probe(l, x, r)
			vals[i] = old
			num := (lp - lm) / (2 * h)
			got := float64(analytic[i])
			tol := 2e-2 * math.Max(1, math.Abs(num))
			// Crossing a ReLU or max-pool kink inside [−h, h] bends the
			// probe; the bend's size, (lp − 2·l0 + lm)/2h, is also about the
			// error it puts into the central difference. Such coordinates
			// say nothing about the analytic gradient, so they are skipped
			// (and counted: a check that skips most coordinates fails).
			if math.Abs(lp-2*l0+lm)/(2*h) > tol/4 {
				kinks++
				continue
			}
			if diff := math.Abs(num - got); diff > tol {
				t.Errorf("%s[%d]: analytic %.5f, numeric %.5f", name, i, got, num)
			}
		}
		if kinks > trials/4 {
			t.Errorf("%s: %d of %d probes crossed a kink; the check is not meaningful", name, kinks, trials)
		}
	}
	if wantInputGrad {
		if dxc == nil {
			t.Fatal("no input gradient")
		}
		check("dx", x.Data, dxc)
	}
	for i, p := range params {
		if p.Kind != Buffer {
			check(p.Name, p.Value, grads[i])
		}
	}
}

func TestGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	withBias := func(l *Conv2D) *Conv2D {
		for i := range l.B.Value {
			l.B.Value[i] = float32(rng.NormFloat64())
		}
		return l
	}
	cases := []struct {
		name       string
		layer      Layer
		n, h, w, c int
	}{
		{"conv3x3 pad1", NewConv2D(rng, 3, 5, 3, 1, 1, false), 2, 7, 5, 3},
		{"conv3x3 stride2 bias", withBias(NewConv2D(rng, 2, 3, 3, 2, 1, true)), 3, 9, 7, 2},
		{"conv5x5 pad0", NewConv2D(rng, 2, 4, 5, 1, 0, false), 1, 7, 8, 2},
		{"conv1x1", withBias(NewConv2D(rng, 5, 3, 1, 1, 0, true)), 2, 3, 3, 5},
		{"conv3x3 padded layout", func() *Conv2D { c := NewConv2D(rng, 3, 5, 3, 1, 1, false); c.path = kernels.ConvPadded; return c }(), 3, 5, 6, 3},
		{"conv5x5 padded layout bias+relu", func() *Conv2D {
			c := withBias(NewConv2D(rng, 2, 3, 5, 1, 2, true))
			c.ReLU, c.path, c.maxChunk = true, kernels.ConvPadded, 1
			return c
		}(), 2, 6, 5, 2},
		{"conv3x3 bias+relu", func() *Conv2D { c := withBias(NewConv2D(rng, 2, 3, 3, 1, 1, true)); c.ReLU = true; return c }(), 2, 5, 4, 2},
		// 8 or more channels: Winograd forward and input gradient,
		// F(2×2) for few tiles (odd channels: Go transforms), F(4×4) for
		// 48 or more (multiples of 8: assembly); one input channel and
		// 32 out: the direct first-layer kernel.
		{"conv3x3 winograd F2 bias", withBias(NewConv2D(rng, 9, 10, 3, 1, 1, true)), 2, 5, 7, 9},
		{"conv3x3 winograd F4", NewConv2D(rng, 8, 16, 3, 1, 1, false), 4, 13, 11, 8},
		{"conv3x3 winograd F4 odd bias+relu", func() *Conv2D {
			c := withBias(NewConv2D(rng, 11, 9, 3, 1, 1, true))
			c.ReLU = true
			return c
		}(), 5, 12, 10, 11},
		{"conv3x3 direct first layer", func() *Conv2D { c := withBias(NewConv2D(rng, 1, 32, 3, 1, 1, true)); c.ReLU = true; return c }(), 2, 6, 5, 1},
		{"batchnorm", NewBatchNorm(3), 4, 3, 5, 3},
		{"batchnorm+relu", func() *BatchNorm { b := NewBatchNorm(3); b.ReLU = true; return b }(), 4, 3, 5, 3},
		// Multiples of 8 channels take the vector kernels on amd64.
		{"batchnorm 16ch", NewBatchNorm(16), 3, 5, 3, 16},
		{"batchnorm+relu 8ch", func() *BatchNorm { b := NewBatchNorm(8); b.ReLU = true; return b }(), 3, 3, 7, 8},
		{"relu", NewActivation(ReLU), 2, 3, 3, 3},
		{"hardsigmoid", NewActivation(HardSigmoid), 2, 3, 3, 3},
		{"hardswish", NewActivation(HardSwish), 2, 3, 3, 3},
		{"maxpool2", NewMaxPool(2, 2), 2, 6, 5, 3},
		{"maxpool3s2", NewMaxPool(3, 2), 2, 7, 7, 2},
		{"maxpool2 16ch odd", NewMaxPool(2, 2), 2, 7, 5, 16},
		{"globalavg", &GlobalAvgPool{}, 3, 4, 5, 3},
		{"linear", NewLinear(rng, 12, 7), 5, 1, 1, 12},
		{"flatten+linear", NewSequential(&Flatten{}, NewLinear(rng, 2*3*4, 5)), 3, 2, 3, 4},
		{"depthwise3x3", NewDepthwiseConv(rng, 4, 3, 1, 1), 2, 6, 5, 4},
		{"depthwise3x3 stride2", NewDepthwiseConv(rng, 3, 3, 2, 1), 2, 7, 6, 3},
		{"depthwise5x5 stride2", NewDepthwiseConv(rng, 2, 5, 2, 2), 2, 9, 8, 2},
		{"squeeze-excite", NewSqueezeExcite(rng, 6, 3), 2, 4, 3, 6},
		{"residual", NewResidual(NewSequential(NewConv2D(rng, 3, 3, 3, 1, 1, false), NewBatchNorm(3), NewActivation(HardSwish))), 2, 5, 4, 3},
		{"residual projection stride2", NewProjection(
			NewSequential(NewConv2D(rng, 3, 4, 3, 2, 1, false), NewBatchNorm(4), NewActivation(ReLU), NewConv2D(rng, 4, 4, 3, 1, 1, false)),
			NewSequential(NewConv2D(rng, 3, 4, 1, 2, 0, false), NewBatchNorm(4))), 2, 6, 5, 3},
		{"vgg-ish block", NewSequential(NewConv2D(rng, 2, 4, 3, 1, 1, false), NewBatchNorm(4), NewActivation(ReLU), NewMaxPool(2, 2)), 3, 6, 6, 2},
	}
	// Finite-difference steps other than the default, for linear layers
	// whose rounding needs a larger one.
	steps := map[string]float64{"conv3x3 winograd F4": 1e-2}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := randTensor(rng, tc.n, tc.h, tc.w, tc.c)
			checkGrad(t, tc.layer, x, true, steps[tc.name])
		})
	}
}

func TestCrossEntropyGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	// A teacher: random rows summing to 1.
	teacher := make([]float32, 5*7)
	for r := range 5 {
		var sum float32
		for i := range 7 {
			teacher[r*7+i] = rng.Float32()
			sum += teacher[r*7+i]
		}
		for i := range 7 {
			teacher[r*7+i] /= sum
		}
	}
	for _, tc := range []struct {
		smooth, weight float32
	}{{0, 0}, {0.1, 0}, {0, 1}, {0.1, 0.7}} {
		logits := randTensor(rng, 5, 1, 1, 7)
		labels := []uint8{0, 3, 6, 7, 8} // 7 and 8 are the sets {1,4,5} and {2}
		ce := &CrossEntropy{Smoothing: tc.smooth, Sets: [][]int{{1, 4, 5}, {2}}}
		_, g, _ := ce.Distill(logits, labels, teacher, tc.weight)
		grad := append([]float32(nil), g.Data...)
		const h = 1e-2
		for i := range logits.Data {
			old := logits.Data[i]
			logits.Data[i] = old + h
			lp, _, _ := ce.Distill(logits, labels, teacher, tc.weight)
			logits.Data[i] = old - h
			lm, _, _ := ce.Distill(logits, labels, teacher, tc.weight)
			logits.Data[i] = old
			num := (lp - lm) / (2 * h)
			if math.Abs(num-float64(grad[i])) > 1e-3 {
				t.Errorf("smoothing %v, teacher weight %v: dlogits[%d] analytic %.5f numeric %.5f", tc.smooth, tc.weight, i, grad[i], num)
			}
		}
	}
}

func TestDistillValue(t *testing.T) {
	// With weight 1 the loss is the cross-entropy to the teacher alone,
	// whatever the labels and smoothing: −Σ q_i log p_i.
	logits := &Tensor{N: 1, H: 1, W: 1, C: 3, Data: []float32{1, 2, 3}}
	q := []float32{0.2, 0.3, 0.5}
	e := []float64{math.Exp(1), math.Exp(2), math.Exp(3)}
	sum := e[0] + e[1] + e[2]
	var want float64
	for i := range q {
		want -= float64(q[i]) * math.Log(e[i]/sum)
	}
	for _, label := range []uint8{0, 2} {
		loss, _, _ := (&CrossEntropy{Smoothing: 0.2}).Distill(logits, []uint8{label}, q, 1)
		if math.Abs(loss-want) > 1e-6 {
			t.Errorf("label %d: loss %v, want %v", label, loss, want)
		}
	}
}

func TestCrossEntropyValue(t *testing.T) {
	// Uniform logits over k classes give loss ln k whatever the smoothing.
	logits := NewTensor(2, 1, 1, 4)
	for _, s := range []float32{0, 0.3} {
		ce := &CrossEntropy{Smoothing: s}
		loss, _, _ := ce.Loss(logits, []uint8{1, 2})
		if math.Abs(loss-math.Log(4)) > 1e-6 {
			t.Errorf("smoothing %v: loss %v, want ln 4", s, loss)
		}
	}
}

func TestCrossEntropySets(t *testing.T) {
	// A set target's loss is −log of the set's total probability; a set of
	// one class is the plain loss.
	logits := &Tensor{N: 2, H: 1, W: 1, C: 3, Data: []float32{1, 2, 3, 1, 2, 3}}
	ce := &CrossEntropy{Sets: [][]int{{0, 1}, {2}}}
	loss, _, correct := ce.Loss(logits, []uint8{3, 4})
	e1, e2, e3 := math.Exp(1), math.Exp(2), math.Exp(3)
	want := (-math.Log((e1+e2)/(e1+e2+e3)) - math.Log(e3/(e1+e2+e3))) / 2
	if math.Abs(loss-want) > 1e-6 || correct != 1 {
		t.Errorf("loss %v correct %d, want %v and 1", loss, correct, want)
	}
	plain, _, _ := (&CrossEntropy{}).Loss(&Tensor{N: 1, H: 1, W: 1, C: 3, Data: []float32{1, 2, 3}}, []uint8{2})
	single, _, _ := ce.Loss(&Tensor{N: 1, H: 1, W: 1, C: 3, Data: []float32{1, 2, 3}}, []uint8{4})
	if math.Abs(plain-single) > 1e-9 {
		t.Errorf("set {2} loss %v, class 2 loss %v", single, plain)
	}
}

func TestDropout(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	d := NewDropout(rng, 0.5)
	x := NewTensor(1, 1, 1, 10000)
	for i := range x.Data {
		x.Data[i] = 1
	}
	y := d.Forward(x, true)
	zeros := 0
	for _, v := range y.Data {
		switch v {
		case 0:
			zeros++
		case 2:
		default:
			t.Fatalf("kept value %v, want 2 (scaled by 1/(1-p))", v)
		}
	}
	if zeros < 4700 || zeros > 5300 {
		t.Errorf("%d of 10000 dropped, want about 5000", zeros)
	}
	dx := d.Backward(y)
	for i, v := range dx.Data {
		if want := y.Data[i] * y.Data[i] / x.Data[i]; v != want && !(v == 0 && want == 0) {
			t.Fatalf("dx[%d] = %v, want %v", i, v, want)
		}
	}
	if got := d.Forward(x, false); got != x {
		t.Error("inference-mode dropout is not the identity")
	}
}

// TestDropoutMaskRate checks the share of dropped values for several
// rates, including lengths that are not a multiple of the four values
// drawn per random number.
func TestDropoutMaskRate(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, tc := range []struct {
		p float32
		n int
	}{{0.3, 100003}, {0.5, 40001}, {0.1, 50002}, {0.9, 30001}, {0.3, 3}} {
		mask := make([]float32, tc.n)
		dropoutMask(mask, rng, tc.p)
		zeros := 0
		for i, m := range mask {
			switch m {
			case 0:
				zeros++
			case 1 / (1 - tc.p):
			default:
				t.Fatalf("p=%v: mask[%d] = %v, want 0 or %v", tc.p, i, m, 1/(1-tc.p))
			}
		}
		// Five standard deviations of the binomial count.
		want := float64(tc.p) * float64(tc.n)
		if sd := math.Sqrt(want * float64(1-tc.p)); math.Abs(float64(zeros)-want) > 5*sd+1 {
			t.Errorf("p=%v: %d of %d dropped, want about %.0f", tc.p, zeros, tc.n, want)
		}
	}
}

func TestBatchNormInference(t *testing.T) {
	b := NewBatchNorm(2)
	b.RunMean.Value = []float32{1, -2}
	b.RunVar.Value = []float32{4, 0.25}
	b.Gamma.Value = []float32{2, 1}
	b.Beta.Value = []float32{0.5, 0}
	x := &Tensor{N: 1, H: 1, W: 1, C: 2, Data: []float32{3, -1}}
	y := b.Forward(x, false)
	want := []float32{2*(3-1)/float32(math.Sqrt(4+1e-5)) + 0.5, (-1 + 2) / float32(math.Sqrt(0.25+1e-5))}
	for i := range want {
		if math.Abs(float64(y.Data[i]-want[i])) > 1e-5 {
			t.Errorf("y[%d] = %v, want %v", i, y.Data[i], want[i])
		}
	}
}
