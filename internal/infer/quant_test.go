package infer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/blas"
	"github.com/fashion-classifier/fashion/internal/kernels"
	"github.com/fashion-classifier/fashion/internal/nn"
)

func randFloats(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * scale)
	}
	return x
}

// oneStep is a program of the single step s over inputs of in values.
func oneStep(t *testing.T, s Step, in, out int) *Program {
	t.Helper()
	b := NewBuilder(in)
	b.Slot()
	b.Add(s)
	p, err := b.Finish(1, out, false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInt8StepsMatchDequantizedFloat runs a convolution and a fully
// connected layer in int8 and compares them with the float32 steps given
// the dequantized weights and the dequantized (rounded) input: the int8
// path must compute exactly that product, up to float32 rounding.
func TestInt8StepsMatchDequantizedFloat(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 13))
	conv := kernels.ConvShape{C: 3, H: 7, W: 9, M: 21, KH: 3, KW: 2, SH: 2, SW: 1, DH: 1, DW: 2, PT: 1, PL: 1, Groups: 1}
	conv.OH = (conv.H+2-3)/2 + 1
	conv.OW = (conv.W + 2 - (2-1)*2 - 1) + 1
	pooled := kernels.SquareConv(8, 9, 7, 16, 3, 1, 1) // Winograd, odd sizes
	cases := []struct {
		name    string
		step    func(w, bias []float32) Step
		in, out int
		k, m    int
	}{
		{"conv", func(w, bias []float32) Step {
			return &Conv{In: 0, Out: 1, Shape: conv, W: w, Bias: bias, Act: kernels.ReLU}
		}, conv.H * conv.W * conv.C, conv.OH * conv.OW * conv.M, conv.KH * conv.KW * conv.C, conv.M},
		{"conv+maxpool", func(w, bias []float32) Step {
			s := &Conv{In: 0, Out: 1, Shape: pooled, W: w, Bias: bias, Act: kernels.ReLU}
			if !s.FuseMaxPool(kernels.SquarePool(pooled.M, pooled.OH, pooled.OW, 2, 2)) {
				t.Fatal("the 3×3 convolution did not take the max pool")
			}
			return s
		}, pooled.H * pooled.W * pooled.C, (pooled.OH / 2) * (pooled.OW / 2) * pooled.M, 9 * pooled.C, pooled.M},
		{"gemm", func(w, bias []float32) Step {
			return &Gemm{In: 0, Out: 1, K: 37, M: 11, W: w, Bias: bias}
		}, 37, 11, 37, 11},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, bias := randFloats(rng, tc.k*tc.m, 0.2), randFloats(rng, tc.m, 0.1)
			fp := oneStep(t, tc.step(append([]float32(nil), w...), bias), tc.in, tc.out)
			n := 5
			x := randFloats(rng, n*tc.in, 1)
			ranges, err := fp.Calibrate(x, n, 2)
			if err != nil {
				t.Fatal(err)
			}
			layers, err := fp.QuantizeWeights(ranges)
			if err != nil {
				t.Fatal(err)
			}
			q, err := fp.WithInt8(layers, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := q.steps[0].(*Int8Conv); !ok {
				t.Fatalf("step is %T, want *Int8Conv", q.steps[0])
			}
			l := layers[0]
			deq, xd := dequantized(l, x)
			for i := range deq {
				if d := math.Abs(float64(deq[i] - w[i])); d > float64(l.WScale[i%tc.m])/2*1.0001 {
					t.Fatalf("weight %d: %v quantized to %v", i, w[i], deq[i])
				}
			}
			ref := oneStep(t, tc.step(deq, bias), tc.in, tc.out)
			want := ref.Run(ref.NewState(), xd, n)
			got := q.Run(q.NewState(), x, n)
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("output %d: int8 %v, dequantized float %v", i, got[i], want[i])
				}
			}
			// The float program is unchanged.
			if _, ok := fp.steps[0].(*Int8Conv); ok {
				t.Fatal("WithInt8 changed the float program")
			}
		})
	}
}

func TestWithInt8RejectsBadLayers(t *testing.T) {
	p := oneStep(t, &Gemm{In: 0, Out: 1, K: 4, M: 3, W: make([]float32, 12)}, 4, 3)
	good := Int8Layer{K: 4, M: 3, W: make([]int8, 12), WScale: []float32{1, 1, 1}, InScale: 0.1}
	for name, l := range map[string]Int8Layer{
		"shape":        {K: 3, M: 4, W: make([]int8, 12), WScale: []float32{1, 1, 1, 1}, InScale: 0.1},
		"short scales": {K: 4, M: 3, W: make([]int8, 12), WScale: []float32{1, 1}, InScale: 0.1},
		"zero scale":   {K: 4, M: 3, W: make([]int8, 12), WScale: []float32{1, 0, 1}, InScale: 0.1},
		"nan input":    {K: 4, M: 3, W: make([]int8, 12), WScale: []float32{1, 1, 1}, InScale: float32(math.NaN())},
	} {
		if _, err := p.WithInt8([]Int8Layer{l}, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := p.WithInt8(nil, nil); err == nil {
		t.Error("missing layers accepted")
	}
	if _, err := p.WithInt8([]Int8Layer{good}, nil); err != nil {
		t.Error(err)
	}
}

func TestUInt8Params(t *testing.T) {
	for _, r := range []Range{{0, 6}, {-1, 3}, {-2, -1}, {0, 0}, {0.5, 2}} {
		s, z := UInt8Params(r)
		for _, v := range []float32{r.Min, r.Max, 0} {
			q := blas.QuantizeU8(v, 1/s, z)
			if back := (float32(q) - float32(z)) * s; math.Abs(float64(back-v)) > float64(s)/2*1.001 {
				t.Errorf("range %v: %v → %d → %v", r, v, q, back)
			}
		}
		if q := blas.QuantizeU8(0, 1/s, z); q != z {
			t.Errorf("range %v: 0 is not exact", r)
		}
	}
}

// TestChainedInt8IsBitExact builds a network of odd sizes where int8
// layers follow each other directly, through max pools (2×2 over an odd
// map, 3×3 stride 2) and through a flatten, and checks that handing uint8
// codes between them (chainU8) gives exactly the logits of handing
// float32, on random images, at batch sizes 1 and 7.
func TestChainedInt8IsBitExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 21))
	bn := func(c int) *nn.BatchNorm { return randomBN(rng, c, true) }
	net := nn.NewSequential(
		nn.NewConv2D(rng, 1, 5, 3, 1, 1, false), bn(5), // float32 (kept)
		nn.NewConv2D(rng, 5, 11, 3, 1, 1, false), bn(11), // int8 → int8 directly
		nn.NewConv2D(rng, 11, 9, 3, 1, 1, false), bn(9), // Winograd-shaped: the pool is fused
		nn.NewMaxPool(2, 2),                                               // 17×15 → 8×7
		nn.NewConv2D(rng, 9, 7, 1, 1, 0, true), nn.NewActivation(nn.ReLU), // pointwise, → pool step
		nn.NewMaxPool(2, 2), // 8×7 → 4×3
		nn.NewConv2D(rng, 7, 9, 3, 1, 1, false), bn(9),
		nn.NewMaxPool(3, 2), // 4×3 → 1×1 (3×3 stride 2, a pool step)
		&nn.Flatten{},
		nn.NewLinear(rng, 9, 13), nn.NewActivation(nn.ReLU),
		nn.NewLinear(rng, 13, 5), // last: float32 output
	)
	chained, plain := int8Pair(t, rng, net, 17, 15)
	// Every int8 layer hands codes to the next: conv2 out only, conv3 (its
	// pool fused), conv4 and conv5 (through pool steps), fc1 in and out,
	// fc2 in only.
	var links []string
	pools, fused := 0, 0
	for i := range chained.Steps() {
		switch s := chained.Step(i).(type) {
		case *Int8Conv:
			in, out := s.Chained()
			links = append(links, fmt.Sprint(in, out))
			if s.pool != nil {
				fused++
			}
		case *PoolU8:
			pools++
		}
	}
	if got, want := strings.Join(links, " "), "false true true true true true true true true true true false"; got != want || pools != 2 || fused != 1 {
		t.Errorf("chained (in out) per int8 layer: %s, %d uint8 pools, %d fused; want %s, 2, 1", got, pools, fused, want)
	}
	sameLogits(t, rng, chained, plain, 1, 7)
}

// TestInt8ResidualSum runs a convolution that takes a residual sum
// (Conv.FuseAdd, then ReLU) in int8 and compares it with the float32 step
// given the dequantized weights and input: the sum and the ReLU after it
// must survive the swap to int8.
func TestInt8ResidualSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 17))
	sh := kernels.SquareConv(8, 9, 7, 16, 3, 1, 1) // Winograd, odd sizes
	in, out := sh.H*sh.W*sh.C, sh.OH*sh.OW*sh.M
	w, bias := randFloats(rng, 9*sh.C*sh.M, 0.2), randFloats(rng, sh.M, 0.1)
	// build returns the program of one convolution of weights w over slot
	// 0 plus slot 1 (never written by a step: the test fills it), into 2.
	build := func(w []float32, fuse bool) *Program {
		b := NewBuilder(in)
		res, o := b.Slot(), b.Slot()
		c := &Conv{In: 0, Out: o, Shape: sh, W: w, Bias: bias}
		if fuse && !c.FuseAdd(res) {
			t.Fatal("the Winograd convolution did not take the sum")
		}
		c.SetActivation(kernels.ReLU)
		b.Add(c)
		p, err := b.Finish(o, out, false)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	n := 3
	x, r := randFloats(rng, n*in, 1), randFloats(rng, n*out, 1)
	run := func(p *Program, x []float32) []float32 {
		st := p.NewState()
		st.bufs[1] = r
		return p.Run(st, x, n)
	}
	ranges, err := build(w, false).Calibrate(x, n, 2)
	if err != nil {
		t.Fatal(err)
	}
	fp := build(w, true)
	layers, err := fp.QuantizeWeights(ranges)
	if err != nil {
		t.Fatal(err)
	}
	q, err := fp.WithInt8(layers, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := q.steps[0].(*Int8Conv); !ok || !strings.Contains(s.String(), "add=true") {
		t.Fatalf("step is %v, want an Int8Conv taking the sum", q.steps[0])
	}
	deq, xd := dequantized(layers[0], x)
	want, got := run(build(deq, true), xd), run(q, x)
	negatives := 0
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("output %d: int8 %v, dequantized float %v", i, got[i], want[i])
		}
		if got[i] < 0 {
			negatives++
		}
	}
	if negatives > 0 {
		t.Fatalf("%d outputs below 0: the ReLU did not follow the sum", negatives)
	}
}

// TestChainedInt8Residual: in a residual block run in int8, the body's
// first convolution hands codes to the last, which takes the sum in
// float32; the shortcut's output, read only as that residual, stays
// float32 (handing it over as codes would feed them to the wrong input).
// Chained and unchained programs agree bit for bit.
func TestChainedInt8Residual(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 22))
	bn := func(c int, relu bool) *nn.BatchNorm { return randomBN(rng, c, relu) }
	body := nn.NewSequential(nn.NewConv2D(rng, 8, 16, 3, 1, 1, false), bn(16, true), nn.NewConv2D(rng, 16, 16, 3, 1, 1, false), bn(16, false))
	short := nn.NewSequential(nn.NewConv2D(rng, 8, 16, 1, 1, 0, false), bn(16, false))
	net := nn.NewSequential(
		nn.NewConv2D(rng, 1, 8, 3, 1, 1, false), bn(8, true), // float32 (kept)
		nn.NewProjection(body, short), nn.NewActivation(nn.ReLU),
		&nn.GlobalAvgPool{}, nn.NewLinear(rng, 16, 5),
	)
	chained, plain := int8Pair(t, rng, net, 9, 11)
	// Shortcut, body conv1 (codes out), body conv2 (codes in, the sum),
	// the linear layer.
	var links []string
	for i := range chained.Steps() {
		if s, ok := chained.Step(i).(*Int8Conv); ok {
			in, out := s.Chained()
			links = append(links, fmt.Sprint(in, out, s.hasRes))
		}
	}
	if got, want := strings.Join(links, " | "), "false false false | false true false | true false true | false false false"; got != want {
		t.Errorf("(chained in, chained out, takes the sum) per int8 layer: %s, want %s", got, want)
	}
	sameLogits(t, rng, chained, plain, 1, 6)
}

// dequantized returns int8 layer l's weights and the input x as the int8
// path sees them (quantized to l's uint8 codes), back in float32.
func dequantized(l Int8Layer, x []float32) (w, xd []float32) {
	w = make([]float32, len(l.W))
	for i, c := range l.W {
		w[i] = float32(c) * l.WScale[i%l.M]
	}
	xd = make([]float32, len(x))
	for i, v := range x {
		xd[i] = (float32(blas.QuantizeU8(v, 1/l.InScale, l.InZero)) - float32(l.InZero)) * l.InScale
	}
	return w, xd
}

// randomBN is a batch norm over c channels with random scales, shifts and
// statistics (so that folding it is checked), with a fused ReLU if relu.
func randomBN(rng *rand.Rand, c int, relu bool) *nn.BatchNorm {
	b := nn.NewBatchNorm(c)
	b.ReLU = relu
	for i := range c {
		b.Gamma.Value[i] = float32(0.5 + rng.Float64())
		b.Beta.Value[i] = float32(rng.NormFloat64() * 0.3)
		b.RunMean.Value[i] = float32(rng.NormFloat64() * 0.2)
		b.RunVar.Value[i] = float32(0.5 + rng.Float64())
	}
	return b
}

// int8Pair compiles net over h×w one-channel images, calibrates it on 16
// random images and returns it with every quantizable layer but the first
// in int8: handing uint8 codes between them (WithInt8) and handing float32
// (swapInt8).
func int8Pair(t *testing.T, rng *rand.Rand, net *nn.Sequential, h, w int) (chained, plain *Program) {
	t.Helper()
	prog, err := Compile(net, h, w, 1)
	if err != nil {
		t.Fatal(err)
	}
	ranges, err := prog.Calibrate(randFloats(rng, 16*h*w, 1), 16, 5)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := prog.QuantizeWeights(ranges)
	if err != nil {
		t.Fatal(err)
	}
	use := func(i int) bool { return i > 0 }
	if chained, err = prog.WithInt8(layers, use); err != nil {
		t.Fatal(err)
	}
	if plain, err = prog.swapInt8(layers, use); err != nil {
		t.Fatal(err)
	}
	return chained, plain
}

// sameLogits fails the test unless chained and plain give bit-identical
// logits on random images at each batch size.
func sameLogits(t *testing.T, rng *rand.Rand, chained, plain *Program, batches ...int) {
	t.Helper()
	for _, n := range batches {
		x := randFloats(rng, n*chained.InSize(), 1.2)
		a, err := NewPredictor(chained).Logits(x, n)
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewPredictor(plain).Logits(x, n)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a, b) {
			t.Errorf("batch %d: chained logits %v, float32 hand-over %v", n, a, b)
		}
	}
}
