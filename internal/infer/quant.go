package infer

import (
	"fmt"
	"math"
	"sync"

	"github.com/fashion-classifier/fashion/internal/blas"
	"github.com/fashion-classifier/fashion/internal/kernels"
	"github.com/fashion-classifier/fashion/internal/parallel"
)

// Int8 inference (post-training static quantization). A quantized layer
// is a convolution without groups or a fully connected layer whose
// activation is none or ReLU: its input is quantized to uint8 with one
// calibrated scale and zero point per tensor, its (batch-norm-folded)
// weights are int8 with one symmetric scale per output channel, and
// blas.GemmInt8F32 multiplies them with bias and ReLU fused (and, for a
// residual block's last convolution, the shortcut's sum before the ReLU:
// GemmInt8F32Add), writing float32 for the steps after it. Other steps
// stay float32.
//
// Where an int8 layer's only reader is another int8 layer, or a max pool
// whose only reader is one, the two pass uint8 codes instead (chainU8):
// the first requantizes its output to the second's input scale in the
// product's epilogue (blas.GemmInt8U8) and the pool takes the maximum of
// the codes. The result is bit for bit what the float32 hand-over
// computes, since both round the same float32 value the same way and
// quantization is monotone, so the maximum commutes with it.

// Int8Layer is one quantized layer of a program: the int8 weights
// ([K, M] row-major, as the float32 step's W) with their per-column
// scales, and the input's quantization.
type Int8Layer struct {
	K, M    int
	W       []int8
	WScale  []float32 // M values: weight = W·WScale
	InScale float32   // input value = (code − InZero)·InScale
	InZero  uint8
}

// Range is the smallest and largest value a quantized layer's input took
// during calibration.
type Range struct{ Min, Max float32 }

// quantizable reports whether step s can run in int8, and its weights.
func quantizable(s Step) (in, k, m int, w []float32, ok bool) {
	switch s := s.(type) {
	case *Conv:
		sh := s.Shape
		if sh.Groups != 1 || (s.Act.Kind != kernels.ActNone && s.Act.Kind != kernels.ActReLU) {
			return 0, 0, 0, nil, false
		}
		return s.In, sh.KH * sh.KW * sh.C, sh.M, s.W, true
	case *Gemm:
		if s.Act.Kind != kernels.ActNone && s.Act.Kind != kernels.ActReLU {
			return 0, 0, 0, nil, false
		}
		return s.In, s.K, s.M, s.W, true
	}
	return 0, 0, 0, nil, false
}

// Quantizable is the number of layers of p that can run in int8, in
// program order: the layers Calibrate, QuantizeWeights and WithInt8 number.
func (p *Program) Quantizable() int {
	n := 0
	for _, s := range p.steps {
		if _, _, _, _, ok := quantizable(s); ok {
			n++
		}
	}
	return n
}

// Int8Weights names, for every quantizable layer of p in order, the
// model file's tensor its float32 weights came from ("" when they were
// computed): what an int8 file may leave out once the layer runs in int8.
func (p *Program) Int8Weights() []string {
	var names []string
	for _, s := range p.steps {
		if _, _, _, _, ok := quantizable(s); ok {
			names = append(names, weightName(s))
		}
	}
	return names
}

// FloatWeights names the model file's tensors that p's float32
// convolutions and products use: weights an int8 file must not have left
// out.
func (p *Program) FloatWeights() []string {
	var names []string
	for _, s := range p.steps {
		if w := weightName(s); w != "" {
			names = append(names, w)
		}
	}
	return names
}

func weightName(s Step) string {
	switch s := s.(type) {
	case *Conv:
		return s.Weight
	case *Gemm:
		return s.Weight
	}
	return ""
}

// Calibrate runs p on n images x in batches of at most batch and returns
// the range of every quantizable layer's input.
func (p *Program) Calibrate(x []float32, n, batch int) ([]Range, error) {
	if n < 1 || len(x) < n*p.inSize || batch < 1 {
		return nil, fmt.Errorf("infer: calibrating on %d images of %d values (have %d)", n, p.inSize, len(x))
	}
	ranges := make([]Range, p.Quantizable())
	for i := range ranges {
		ranges[i] = Range{Min: float32(math.Inf(1)), Max: float32(math.Inf(-1))}
	}
	st := p.NewState()
	for b0 := 0; b0 < n; b0 += batch {
		nb := min(batch, n-b0)
		p.start(st, x[b0*p.inSize:(b0+nb)*p.inSize])
		q := 0
		for i, s := range p.steps {
			if in, k, _, _, ok := quantizable(s); ok {
				size := nb * k
				if c, isConv := s.(*Conv); isConv {
					size = nb * c.Shape.H * c.Shape.W * c.Shape.C
				}
				r := &ranges[q]
				for _, v := range st.bufs[in][:size] {
					r.Min, r.Max = min(r.Min, v), max(r.Max, v)
				}
				q++
			}
			p.step(st, i, nb)
		}
	}
	st.bufs[p.in] = nil
	for i, r := range ranges {
		if !(r.Min <= r.Max) || math.IsInf(float64(r.Max-r.Min), 0) {
			return nil, fmt.Errorf("infer: layer %d's input range [%v, %v] cannot be quantized", i, r.Min, r.Max)
		}
	}
	return ranges, nil
}

// UInt8Params are the uint8 scale and zero point that cover r (widened to
// include 0, so that zero padding and ReLU's zero are exact).
func UInt8Params(r Range) (scale float32, zero uint8) {
	lo, hi := min(float64(r.Min), 0), max(float64(r.Max), 0)
	if hi-lo < 1e-8 {
		return 1, 0
	}
	s := (hi - lo) / 255
	z := math.Round(-lo / s)
	return float32(s), uint8(min(max(z, 0), 255))
}

// QuantizeWeights makes the int8 layers of p from its (folded) float32
// weights and the calibrated input ranges: per output column, symmetric
// scale max|w|/127.
func (p *Program) QuantizeWeights(ranges []Range) ([]Int8Layer, error) {
	if len(ranges) != p.Quantizable() {
		return nil, fmt.Errorf("infer: %d input ranges for %d quantizable layers", len(ranges), p.Quantizable())
	}
	var layers []Int8Layer
	for _, s := range p.steps {
		_, k, m, w, ok := quantizable(s)
		if !ok {
			continue
		}
		l := Int8Layer{K: k, M: m, W: make([]int8, k*m), WScale: make([]float32, m)}
		l.InScale, l.InZero = UInt8Params(ranges[len(layers)])
		for j := range m {
			amax := 0.0
			for kk := range k {
				amax = math.Max(amax, math.Abs(float64(w[kk*m+j])))
			}
			sc := amax / 127
			if sc == 0 {
				sc = 1
			}
			l.WScale[j] = float32(sc)
			for kk := range k {
				l.W[kk*m+j] = int8(math.Round(float64(w[kk*m+j]) / sc))
			}
		}
		layers = append(layers, l)
	}
	return layers, nil
}

// WithInt8 returns a program that runs quantizable layer i of p in int8
// with layers[i] where use(i) is true (nil: every layer), and everything
// else as p does. p is not changed; the two share their float32 steps.
func (p *Program) WithInt8(layers []Int8Layer, use func(i int) bool) (*Program, error) {
	q, err := p.swapInt8(layers, use)
	if err != nil {
		return nil, err
	}
	chainU8(q)
	q.planBuffers()
	return q, nil
}

// swapInt8 is WithInt8 with every int8 layer handing float32 to the next
// step.
func (p *Program) swapInt8(layers []Int8Layer, use func(i int) bool) (*Program, error) {
	if len(layers) != p.Quantizable() {
		return nil, fmt.Errorf("infer: %d int8 layers for a program with %d quantizable layers", len(layers), p.Quantizable())
	}
	q := *p
	q.steps = append([]Step(nil), p.steps...)
	i := 0
	for si, s := range q.steps {
		_, k, m, _, ok := quantizable(s)
		if !ok {
			continue
		}
		l := layers[i]
		i++
		if use != nil && !use(i-1) {
			continue
		}
		if err := l.check(k, m); err != nil {
			return nil, fmt.Errorf("infer: int8 layer %d: %w", i-1, err)
		}
		qs, err := newInt8Step(s, l)
		if err != nil {
			return nil, fmt.Errorf("infer: int8 layer %d: %w", i-1, err)
		}
		q.steps[si] = qs
	}
	return &q, nil
}

// chainU8 makes the int8 layers of p hand uint8 codes to the int8 layers
// that are their only readers, directly or through a max pool without
// padding, a step of its own or fused into the layer (see the comment at
// the top of this file). p's steps may be shared with another program:
// the ones it changes are its own (newInt8Step's) or replaced.
func chainU8(p *Program) {
	readers := make([][]int, p.slots)
	for i, s := range p.steps {
		for _, in := range s.inputs() {
			if in >= 0 && in < p.slots {
				readers[in] = append(readers[in], i)
			}
		}
	}
	readers[p.out] = append(readers[p.out], -1)
	only := func(slot int) Step {
		if r := readers[slot]; len(r) == 1 && r[0] >= 0 {
			return p.steps[r[0]]
		}
		return nil
	}
	for _, s := range p.steps {
		a, ok := s.(*Int8Conv)
		if !ok || a.hasRes { // the sum is taken in float32
			continue
		}
		if a.pool != nil && !poolInside(*a.pool) {
			continue
		}
		// The reader must take the codes as its input, not as the
		// residual it adds (Int8Conv.res, float32).
		switch next := only(a.Out).(type) {
		case *Int8Conv:
			if next.In == a.Out {
				a.link(next)
			}
		case *Pool:
			b, ok := only(next.Out).(*Int8Conv)
			if !ok || !next.Max || !poolInside(next.Shape) || b.In != next.Out {
				continue
			}
			a.link(b)
			pi := readers[a.Out][0]
			p.steps[pi] = &PoolU8{In: next.In, Out: next.Out, Shape: next.Shape}
		}
	}
}

// link makes s write uint8 codes of next's input quantization, and next
// read them.
func (s *Int8Conv) link(next *Int8Conv) {
	rq := *s.rq
	rq.OutScale, rq.OutZero = next.Layer.InScale, next.Layer.InZero
	s.rq, s.outU8, next.inU8 = &rq, true, true
}

// poolInside reports whether every window of sh lies inside the map (no
// padding, no window hanging over the border): the pools PoolU8 runs.
func poolInside(sh kernels.PoolShape) bool {
	return sh.PT == 0 && sh.PL == 0 && sh.PB == 0 && sh.PR == 0 && sh.OH >= 1 && sh.OW >= 1 &&
		(sh.OH-1)*sh.SH+(sh.KH-1)*sh.DH < sh.H && (sh.OW-1)*sh.SW+(sh.KW-1)*sh.DW < sh.W
}

// PoolU8 is a max pool over the uint8 codes one int8 layer hands the next
// (see chainU8); its windows lie inside the map.
type PoolU8 struct {
	In, Out int
	Shape   kernels.PoolShape
}

func (s *PoolU8) prepare() {}

func (s *PoolU8) inputs() []int { return []int{s.In} }

func (s *PoolU8) String() string {
	sh := s.Shape
	return fmt.Sprintf("PoolU8 max %dx%d s%dx%d over %dx%dx%d", sh.KH, sh.KW, sh.SH, sh.SW, sh.H, sh.W, sh.C)
}

func (s *PoolU8) run(st *State, n int) {
	sh := s.Shape
	kernels.MaxPoolU8(grow(&st.u8[s.Out], n*sh.OH*sh.OW*sh.C), st.u8[s.In][:n*sh.H*sh.W*sh.C], n, sh)
}

func (l Int8Layer) check(k, m int) error {
	if l.K != k || l.M != m || len(l.W) != k*m || len(l.WScale) != m {
		return fmt.Errorf("weights %d×%d (%d values, %d scales) for a layer of %d×%d", l.K, l.M, len(l.W), len(l.WScale), k, m)
	}
	if !(l.InScale > 0) || math.IsInf(float64(l.InScale), 0) {
		return fmt.Errorf("input scale %v is not a positive number", l.InScale)
	}
	for j, s := range l.WScale {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return fmt.Errorf("weight scale %d is %v, not a positive number", j, s)
		}
	}
	return nil
}

// Int8Conv is a convolution (no groups) or, with a 1×1 shape over one
// pixel, a fully connected layer, run in int8: its input is quantized,
// unfolded (im2col) in uint8 and multiplied by the packed int8 weights
// with the requantization epilogue fused.
type Int8Conv struct {
	In, Out int
	Shape   kernels.ConvShape
	Layer   Int8Layer
	b       *blas.Int8B
	rq      *blas.Requant
	bufs    sync.Pool // *int8Bufs
	// pool is set when the float32 step had a max pool fused
	// (Conv.FuseMaxPool): the output is pooled after the product.
	pool *kernels.PoolShape
	// inU8 and outU8 say that the step reads and writes the uint8 slots
	// (chainU8): its input comes quantized, its output goes requantized.
	inU8, outU8 bool
	// res is the slot added to the float32 output before the ReLU when
	// hasRes is set (the float32 step had Conv.FuseAdd), in the product's
	// epilogue.
	res    int
	hasRes bool
}

// int8Bufs are one run's buffers: the quantized input (unless it is
// quantized as it is padded), a chunk of it padded, its unfolded rows
// and, for a pooled step, the output before the pool (float32 or uint8).
type int8Bufs struct {
	x, pad, col []uint8
	full        []float32
	fullU8      []uint8
}

func newInt8Step(s Step, l Int8Layer) (*Int8Conv, error) {
	q := &Int8Conv{Layer: l}
	var bias []float32
	var relu bool
	switch s := s.(type) {
	case *Conv:
		q.In, q.Out, q.Shape, bias, relu = s.In, s.Out, s.Shape, s.Bias, s.Act.Kind == kernels.ActReLU
		if s.hasRes {
			// The epilogue adds the sum before its ReLU.
			q.res, q.hasRes = s.res, true
		}
		if s.Pool {
			p := kernels.SquarePool(s.Shape.M, s.Shape.OH, s.Shape.OW, 2, 2)
			q.pool = &p
		}
	case *Gemm:
		q.In, q.Out, bias, relu = s.In, s.Out, s.Bias, s.Act.Kind == kernels.ActReLU
		q.Shape = kernels.SquareConv(s.K, 1, 1, s.M, 1, 1, 0)
	}
	b, err := blas.PackInt8B(l.K, l.M, l.W, l.M)
	if err != nil {
		return nil, err
	}
	q.b = b
	q.rq = &blas.Requant{Scale: make([]float32, l.M), Bias: bias, ReLU: relu}
	for j := range l.M {
		q.rq.Scale[j] = l.InScale * l.WScale[j]
	}
	return q, nil
}

func (s *Int8Conv) prepare() {}

func (s *Int8Conv) String() string {
	sh := s.Shape
	return fmt.Sprintf("Int8Conv %dx%dx%d->%dx%dx%d k%dx%d s%dx%d relu=%v maxpool2x2=%v add=%v", sh.H, sh.W, sh.C, sh.OH, sh.OW, sh.M, sh.KH, sh.KW, sh.SH, sh.SW, s.rq.ReLU, s.pool != nil, s.hasRes)
}

func (s *Int8Conv) inputs() []int {
	if s.hasRes {
		return []int{s.In, s.res}
	}
	return []int{s.In}
}

// Chained reports whether the step reads and writes uint8 codes (see
// chainU8), for tests and tools that describe a program.
func (s *Int8Conv) Chained() (in, out bool) { return s.inU8, s.outU8 }

// int8ColBytes bounds the unfolded rows of one chunk of images: half a
// 2 MiB L2 (measured on the AVX-512 Xeon, VGG at batch 256: 9,730 img/s
// against 9,430 with 4 MiB and 8,800 with 256 KiB).
const int8ColBytes = 1 << 20

func (s *Int8Conv) run(st *State, n int) {
	sh := s.Shape
	in := sh.H * sh.W * sh.C
	k, rows, m := s.Layer.K, sh.OH*sh.OW, sh.M
	bufs, _ := s.bufs.Get().(*int8Bufs)
	if bufs == nil {
		bufs = &int8Bufs{}
	}
	defer s.bufs.Put(bufs)
	z := s.Layer.InZero
	inv := 1 / s.Layer.InScale
	u := sh.Unpadded()
	padded := u != sh
	// The input comes as codes (xq), or as float32 values (x), quantized
	// here: per chunk as it is padded, or else all at once.
	var x []float32
	var xq []uint8
	if s.inU8 {
		xq = st.u8[s.In][:n*in]
	} else {
		x = st.bufs[s.In][:n*in]
	}
	if x != nil && !padded {
		xq = grow(&bufs.x, len(x))
		parallel.For(len(x), 1<<15, func(lo, hi int) {
			blas.QuantizeU8s(xq[lo:hi], x[lo:hi], inv, z)
		})
	}
	var y []float32
	var yq []uint8
	p := s.pool
	switch {
	case s.outU8 && p != nil:
		yq = grow(&bufs.fullU8, n*rows*m)
		defer kernels.MaxPoolU8(grow(&st.u8[s.Out], n*p.OH*p.OW*p.C), yq, n, *p)
	case s.outU8:
		yq = grow(&st.u8[s.Out], n*rows*m)
	case p != nil:
		y = kernels.Grow(&bufs.full, n*rows*m)
		defer kernels.MaxPool(st.get(s.Out, n*p.OH*p.OW*p.C), nil, y, n, *p)
	default:
		y = st.get(s.Out, n*rows*m)
	}
	var res []float32
	if s.hasRes {
		res = st.bufs[s.res][:n*rows*m]
	}
	// product multiplies r rows of unfolded input a into the outputs from
	// row r0.
	product := func(r0, r int, a []uint8) {
		if s.outU8 {
			must(blas.GemmInt8U8(r, a, k, z, s.b, s.rq, yq[r0*m:], m))
		} else {
			var rr []float32
			if res != nil {
				rr = res[r0*m:]
			}
			must(blas.GemmInt8F32Add(r, a, k, z, s.b, s.rq, rr, y[r0*m:], m))
		}
	}
	if sh.KH == 1 && sh.KW == 1 && sh.SH == 1 && sh.SW == 1 && sh.PT == 0 && sh.PL == 0 && sh.OH == sh.H && sh.OW == sh.W {
		// Pointwise or fully connected: the input rows are the product's.
		product(0, n*rows, xq)
		return
	}
	chunk := max(1, min(n, int8ColBytes/(rows*k)))
	col := grow(&bufs.col, chunk*rows*k)
	// A chunk's images are padded first where the kernel overhangs the
	// border (and quantized on the way from float32), so that im2col
	// copies whole kernel rows, one call per output row (VGG-w32 int8 at
	// batch 256 on the AVX-512 Xeon: the border pixels, copied a channel
	// vector at a time, cost more than all the others).
	uin := u.H * u.W * u.C
	var xp []uint8
	if padded {
		xp = grow(&bufs.pad, chunk*uin)
	}
	for n0 := 0; n0 < n; n0 += chunk {
		nc := min(chunk, n-n0)
		src, s0 := xq, n0
		if padded {
			parallel.For(nc, 1, func(lo, hi int) {
				for b := lo; b < hi; b++ {
					dst := xp[b*uin : (b+1)*uin]
					if x != nil {
						kernels.PadQuantizeU8(dst, x[(n0+b)*in:(n0+b+1)*in], inv, z, sh)
					} else {
						kernels.PadU8(dst, xq[(n0+b)*in:(n0+b+1)*in], z, sh)
					}
				}
			})
			src, s0 = xp, 0
		}
		parallel.For(nc*sh.OH, 1, func(lo, hi int) {
			kernels.Im2colU8(col, src, s0, lo, hi, u)
		})
		product(n0*rows, nc*rows, col)
	}
}

// must panics on an error that the checks made when the step was built
// rule out: a bug, not bad input.
func must(err error) {
	if err != nil {
		panic(err)
	}
}

// grow returns (*buf)[:n], reallocating only when it is too small.
func grow(buf *[]uint8, n int) []uint8 {
	if cap(*buf) < n {
		*buf = make([]uint8, n)
	}
	return (*buf)[:n]
}
