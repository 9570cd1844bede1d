package infer

import (
	"fmt"

	"github.com/fashion-classifier/fashion/internal/blas"
	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/kernels"
	"github.com/fashion-classifier/fashion/internal/parallel"
)

// Fusable is a step whose output can absorb, while a program is being
// built, an affine map per output channel (a batch norm) or an
// activation.
type Fusable interface {
	Step
	OutChannels() int
	// ScaleShift folds the map into the step and reports whether it
	// could (a step whose output includes a residual sum cannot).
	ScaleShift(scale, shift []float32) bool
	Activation() kernels.Act
	SetActivation(a kernels.Act)
}

// Unary applies an element-wise function to Size values per image.
type Unary struct {
	In, Out, Size int
	Act           kernels.Act
}

func (s *Unary) inputs() []int { return []int{s.In} }

func (s *Unary) prepare() {}

func (s *Unary) run(st *State, n int) {
	x, y := st.bufs[s.In][:n*s.Size], st.get(s.Out, n*s.Size)
	kernels.ApplyActParallel(y, x, s.Act)
}

func (s *Unary) String() string { return fmt.Sprintf("Unary %d %v", s.Size, s.Act) }

// Affine is y = x·Scale + Shift per channel over rows of len(Scale)
// values (a batch norm that could not be folded), clamped at 0 with ReLU.
type Affine struct {
	In, Out, Size int
	Scale, Shift  []float32
	ReLU          bool
}

func (s *Affine) inputs() []int { return []int{s.In} }

func (s *Affine) prepare() {}

func (s *Affine) run(st *State, n int) {
	x, y := st.bufs[s.In][:n*s.Size], st.get(s.Out, n*s.Size)
	kernels.AffineParallel(y, x, len(s.Scale), s.Scale, s.Shift, s.ReLU)
}

func (s *Affine) String() string {
	return fmt.Sprintf("Affine %d/%d relu=%v", s.Size, len(s.Scale), s.ReLU)
}

// Conv is a 2-D convolution over NHWC data (kernels.Conv: groups, strides,
// dilations, asymmetric padding), followed by a bias and an activation.
// W has the layout kernels.ConvShape documents.
type Conv struct {
	In, Out int
	Shape   kernels.ConvShape
	W       []float32
	Bias    []float32 // M values, or nil
	Act     kernels.Act
	// Weight names the model file's tensor W came from ("" when it was
	// computed), so that an int8 file may leave it out (see
	// Program.Int8Weights).
	Weight string
	ep     *kernels.Epilogue
	// wino is the Winograd form of a 3×3 stride-1 padding-1 convolution
	// (see prepare), or nil.
	wino *kernels.Winograd3x3
	// direct selects kernels.Conv3x3Direct, direct16 kernels.Conv3x3Direct16
	// (see prepare).
	direct, direct16 bool
	// Pool is set when the step also takes the 2×2, stride-2 max pool
	// of its output (FuseMaxPool): Out then holds OH/2×OW/2 pixels.
	Pool bool
	// res is the slot added to the output before the activation when
	// hasRes is set (FuseAdd).
	res    int
	hasRes bool
}

// FuseAdd makes the step add slot res (a map of the output's shape) to
// its output before the activation and reports whether it did: only a
// Winograd convolution without a fused pool or an activation yet, so
// that a residual block's last convolution, the sum with its shortcut and
// the ReLU after it (set afterwards with SetActivation) take one pass
// over the output instead of three. res must be written by a step that
// runs before this one. The step then absorbs no batch norm (ScaleShift
// refuses: it would scale the shortcut too).
func (s *Conv) FuseAdd(res int) bool {
	if s.hasRes || s.Pool || !s.winograd() || s.Act.Kind != kernels.ActNone || res == s.Out {
		return false
	}
	s.res, s.hasRes = res, true
	return true
}

// winograd reports whether prepare gives the step the Winograd form.
func (s *Conv) winograd() bool {
	sh := s.Shape
	return sh.KH == 3 && sh.KW == 3 && sh.Same() && sh.C >= 8 && sh.M >= 8
}

// FuseMaxPool makes the step also compute the max pool of shape p over its
// output and reports whether it did: only a 2×2, stride-2 pool without
// padding over the output of a Winograd convolution whose activation, if
// any, is ReLU (which commutes with the maximum), taken from each output
// block in the cache instead of a pass over the whole output. Front ends
// call it where a pool reads a convolution's output and nothing else
// does; the step's output is then the pooled map.
func (s *Conv) FuseMaxPool(p kernels.PoolShape) bool {
	sh := s.Shape
	plain := p.KH == 2 && p.KW == 2 && p.SH == 2 && p.SW == 2 && p.DH == 1 && p.DW == 1 &&
		p.PT == 0 && p.PL == 0 && p.PB == 0 && p.PR == 0
	if s.Pool || s.hasRes || !s.winograd() || !plain || p.C != sh.M || p.H != sh.OH || p.W != sh.OW ||
		p.OH != sh.OH/2 || p.OW != sh.OW/2 || p.OH < 1 || p.OW < 1 ||
		(s.Act.Kind != kernels.ActNone && s.Act.Kind != kernels.ActReLU) {
		return false
	}
	s.Pool = true
	return true
}

// prepare builds the epilogue and, for a 3×3, stride-1, padding-1
// convolution without groups, the fast path: with 16 channels in and out
// and AVX-512, the direct 16-channel kernel; with at least 8 channels in
// and out the Winograd weights, which make it about twice as fast as
// im2col and a product; with fewer input channels and a multiple of 32
// out, the direct kernel.
func (s *Conv) prepare() {
	s.ep = kernels.NewEpilogue(s.Bias, s.Act)
	sh := s.Shape
	switch {
	case s.winograd() && sh.C == 16 && sh.M == 16 && !s.Pool && kernels.Direct16Fast():
		s.direct16 = true
	case s.winograd():
		s.wino = kernels.NewWinograd3x3(s.W, sh.C, sh.M)
	case sh.KH != 3 || sh.KW != 3 || !sh.Same():
	case kernels.DirectSupported(sh.M):
		// Few input channels (a first layer): the direct kernel is 2.5×
		// im2col and a product of K = 9·C.
		s.direct = true
	}
}

func (s *Conv) run(st *State, n int) {
	sh := s.Shape
	x := st.bufs[s.In][:n*sh.H*sh.W*sh.C]
	if s.Pool {
		y := st.get(s.Out, n*(sh.OH/2)*(sh.OW/2)*sh.M)
		s.wino.ForwardMaxPool(y, x, n, sh.H, sh.W, s.ep, &st.scratch)
		return
	}
	y := st.get(s.Out, n*sh.OH*sh.OW*sh.M)
	switch {
	case s.direct16:
		var res []float32
		if s.hasRes {
			res = st.bufs[s.res][:len(y)]
		}
		kernels.Conv3x3Direct16(y, x, res, n, sh.H, sh.W, s.W, s.ep, &st.scratch)
		return
	case s.hasRes:
		s.wino.ForwardAdd(y, x, st.bufs[s.res][:len(y)], n, sh.H, sh.W, s.ep, &st.scratch)
		return
	case s.wino != nil:
		s.wino.Forward(y, x, n, sh.H, sh.W, s.ep, &st.scratch)
		return
	case s.direct:
		kernels.Conv3x3Direct(y, x, n, sh.H, sh.W, sh.C, sh.M, s.W, s.ep, &st.scratch)
		return
	}
	kernels.Conv{ConvShape: sh}.Forward(y, x, n, s.W, s.ep, &st.scratch)
}

func (s *Conv) String() string {
	sh := s.Shape
	kernel := "im2col"
	switch {
	case s.Pool:
		kernel = "winograd+maxpool2x2"
	case s.direct16 && s.hasRes:
		kernel = "direct3x3x16+add"
	case s.direct16:
		kernel = "direct3x3x16"
	case s.hasRes:
		kernel = "winograd+add"
	case s.wino != nil:
		kernel = "winograd"
	case s.direct:
		kernel = "direct3x3"
	}
	return fmt.Sprintf("Conv %dx%dx%d->%dx%dx%d k%dx%d s%dx%d d%dx%d p%d,%d g%d bias=%v %v %s",
		sh.H, sh.W, sh.C, sh.OH, sh.OW, sh.M, sh.KH, sh.KW, sh.SH, sh.SW, sh.DH, sh.DW, sh.PT, sh.PL, sh.Groups,
		s.Bias != nil, s.Act, kernel)
}

func (s *Conv) inputs() []int {
	if s.hasRes {
		return []int{s.In, s.res}
	}
	return []int{s.In}
}

// OutChannels is the number of output channels an absorbed affine map
// must have.
func (s *Conv) OutChannels() int { return s.Shape.M }

// ScaleShift folds y ← y·scale + shift (per output channel) into the
// weights and bias, unless the step takes a residual sum (FuseAdd), which
// the map would scale too: then it reports false and changes nothing.
func (s *Conv) ScaleShift(scale, shift []float32) bool {
	if s.hasRes {
		return false
	}
	sh := s.Shape
	if sh.Depthwise() {
		for k := range s.W {
			s.W[k] *= scale[k%sh.M]
		}
	} else {
		mg := sh.M / sh.Groups
		kdim := len(s.W) / sh.M
		for g := range sh.Groups {
			blk := s.W[g*kdim*mg : (g+1)*kdim*mg]
			for k := range blk {
				blk[k] *= scale[g*mg+k%mg]
			}
		}
	}
	s.Bias = affineBias(s.Bias, scale, shift)
	return true
}

// Activation is the function applied after the bias.
func (s *Conv) Activation() kernels.Act { return s.Act }

// SetActivation replaces the function applied after the bias.
func (s *Conv) SetActivation(a kernels.Act) { s.Act = a }

// affineBias returns bias·scale + shift, treating a nil bias as zeros.
func affineBias(bias, scale, shift []float32) []float32 {
	out := make([]float32, len(scale))
	for k := range out {
		if bias != nil {
			out[k] = bias[k] * scale[k]
		}
		if shift != nil {
			out[k] += shift[k]
		}
	}
	return out
}

// Gemm is a fully connected layer: y = x·W + Bias with x of K features per
// image and W stored [K, M], followed by an activation.
type Gemm struct {
	In, Out, K, M int
	W             []float32
	Bias          []float32 // M values, or nil
	Act           kernels.Act
	// Weight names the model file's tensor W came from, as Conv.Weight.
	Weight string
	ep     *kernels.Epilogue
	// packed is W packed once for GEMM (see prepare): a single image
	// multiplies it row by row, with no packing per call.
	packed *blas.PackedB
}

// prepare builds the epilogue and packs the final weights.
func (s *Gemm) prepare() {
	s.ep = kernels.NewEpilogue(s.Bias, s.Act)
	s.packed = blas.PackB(false, s.K, s.M, s.W, s.M)
}

func (s *Gemm) run(st *State, n int) {
	x, y := st.bufs[s.In][:n*s.K], st.get(s.Out, n*s.M)
	if n <= 2 && s.packed != nil {
		// One or two images: a matrix-vector product bound by reading the
		// weights, so large layers (VGG's first linear layer, 1.2 MB)
		// split their columns between the workers.
		const cols = 64 // a multiple of every kernel's panel width
		if tasks, w := (s.M+cols-1)/cols, parallel.Workers(); w > 1 && tasks > 1 && s.K*s.M >= 1<<17 {
			parallel.Run(w, tasks, func(_, t int) {
				blas.GemmPackedCols(n, t*cols, min((t+1)*cols, s.M), 1, x, s.K, s.packed, 0, y, s.M)
			})
		} else {
			blas.GemmPacked(n, 1, x, s.K, s.packed, 0, y, s.M)
		}
		s.ep.Rows(y)
		return
	}
	blas.Gemm(false, false, n, s.M, s.K, 1, x, s.K, s.W, s.M, 0, y, s.M)
	s.ep.Apply(y)
}

func (s *Gemm) String() string {
	return fmt.Sprintf("Gemm %d->%d bias=%v %v packed=%v", s.K, s.M, s.Bias != nil, s.Act, s.packed != nil)
}

func (s *Gemm) inputs() []int { return []int{s.In} }

// OutChannels is the number of outputs.
func (s *Gemm) OutChannels() int { return s.M }

// ScaleShift folds y ← y·scale + shift into the weights and bias; it
// always can.
func (s *Gemm) ScaleShift(scale, shift []float32) bool {
	for k := range s.W {
		s.W[k] *= scale[k%s.M]
	}
	s.Bias = affineBias(s.Bias, scale, shift)
	return true
}

// Activation is the function applied after the bias.
func (s *Gemm) Activation() kernels.Act { return s.Act }

// SetActivation replaces the function applied after the bias.
func (s *Gemm) SetActivation(a kernels.Act) { s.Act = a }

// Pool is a max or average pool over NHWC data with padding, strides,
// dilations (max only) and ceil-mode output sizes.
type Pool struct {
	In, Out    int
	Shape      kernels.PoolShape
	Max        bool
	IncludePad bool // average over the whole (padded) window
}

func (s *Pool) inputs() []int { return []int{s.In} }

func (s *Pool) prepare() {}

func (s *Pool) run(st *State, n int) {
	sh := s.Shape
	x := st.bufs[s.In][:n*sh.H*sh.W*sh.C]
	y := st.get(s.Out, n*sh.OH*sh.OW*sh.C)
	if s.Max {
		kernels.MaxPool(y, nil, x, n, sh)
	} else {
		kernels.AvgPool(y, x, n, sh, s.IncludePad)
	}
}

func (s *Pool) String() string {
	sh := s.Shape
	op := "AvgPool"
	if s.Max {
		op = "MaxPool"
	}
	return fmt.Sprintf("%s %dx%dx%d->%dx%d k%dx%d s%dx%d d%dx%d p%d,%d,%d,%d includepad=%v",
		op, sh.H, sh.W, sh.C, sh.OH, sh.OW, sh.KH, sh.KW, sh.SH, sh.SW, sh.DH, sh.DW, sh.PT, sh.PL, sh.PB, sh.PR, s.IncludePad)
}

// GlobalPool averages each of C channels over HW positions.
type GlobalPool struct {
	In, Out, C, HW int
}

func (s *GlobalPool) inputs() []int { return []int{s.In} }

func (s *GlobalPool) prepare() {}

func (s *GlobalPool) run(st *State, n int) {
	x, y := st.bufs[s.In][:n*s.HW*s.C], st.get(s.Out, n*s.C)
	kernels.GlobalAvgPool(y, x, n, s.HW, s.C)
}

func (s *GlobalPool) String() string { return fmt.Sprintf("GlobalPool %dx%d", s.HW, s.C) }

// BinOp is an element-wise arithmetic operator.
type BinOp uint8

// The operators.
const (
	OpAdd BinOp = iota
	OpSub
	OpMul
	OpDiv
)

// Eval applies the operator.
func (op BinOp) Eval(a, b float32) float32 {
	switch op {
	case OpAdd:
		return a + b
	case OpSub:
		return a - b
	case OpMul:
		return a * b
	}
	return a / b
}

// Binary computes Out = A op B (or B op A when Swap is set) where A has
// Size values per image and B repeats with period BSize: B is either
// another slot (BSlot ≥ 0, BSize values per image) or a constant (Const,
// of length BSize, with BSlot = −1). Broadcasting a channel vector over an
// NHWC map (a squeeze-and-excitation gate), or a bias over features, is a
// period equal to the channels; a residual sum has BSize = Size.
type Binary struct {
	A, BSlot, Out int
	Op            BinOp
	Swap          bool
	Size, BSize   int
	Const         []float32
}

func (s *Binary) inputs() []int {
	if s.Const != nil {
		return []int{s.A} // BSlot is unused
	}
	return []int{s.A, s.BSlot}
}

func (s *Binary) prepare() {}

func (s *Binary) run(st *State, n int) {
	a := st.bufs[s.A][:n*s.Size]
	b := s.Const
	if s.BSlot >= 0 {
		b = st.bufs[s.BSlot][:n*s.BSize]
	}
	y := st.get(s.Out, n*s.Size)
	blocks := n * s.Size / s.BSize
	perImage := s.Size / s.BSize
	parallel.For(blocks, max(1, 8192/s.BSize), func(lo, hi int) {
		for k := lo; k < hi; k++ {
			bb := b
			if s.BSlot >= 0 {
				img := k / perImage
				bb = b[img*s.BSize : (img+1)*s.BSize]
			}
			av, yv := a[k*s.BSize:(k+1)*s.BSize], y[k*s.BSize:(k+1)*s.BSize]
			x, z := av, bb
			if s.Swap {
				x, z = bb, av
			}
			switch s.Op {
			case OpAdd:
				kernels.Add(yv, x, z, false)
			case OpSub:
				for j := range yv {
					yv[j] = x[j] - z[j]
				}
			case OpMul:
				for j := range yv {
					yv[j] = x[j] * z[j]
				}
			default:
				for j := range yv {
					yv[j] = x[j] / z[j]
				}
			}
		}
	})
}

func (s *Binary) String() string {
	b := "slot"
	if s.BSlot < 0 {
		b = "const"
	}
	return fmt.Sprintf("Binary op%d swap=%v %d by %s %d", s.Op, s.Swap, s.Size, b, s.BSize)
}

// Concat joins slots along the channel (innermost stored) axis: each image
// is Rows rows of Widths[i] values from slot Ins[i].
type Concat struct {
	Ins    []int
	Widths []int
	Rows   int // rows per image: H·W for maps, 1 for features
	Out    int
}

func (s *Concat) inputs() []int { return s.Ins }

func (s *Concat) prepare() {}

func (s *Concat) run(st *State, n int) {
	total := 0
	for _, w := range s.Widths {
		total += w
	}
	y := st.get(s.Out, n*s.Rows*total)
	off := 0
	for i, in := range s.Ins {
		w := s.Widths[i]
		x := st.bufs[in][:n*s.Rows*w]
		for r := range n * s.Rows {
			copy(y[r*total+off:r*total+off+w], x[r*w:(r+1)*w])
		}
		off += w
	}
}

func (s *Concat) String() string { return fmt.Sprintf("Concat %d rows of %v", s.Rows, s.Widths) }

// Softmax normalises Rows rows of Width values per image into
// probabilities.
type Softmax struct {
	In, Out, Rows, Width int
}

func (s *Softmax) inputs() []int { return []int{s.In} }

func (s *Softmax) prepare() {}

func (s *Softmax) run(st *State, n int) {
	x, y := st.bufs[s.In][:n*s.Rows*s.Width], st.get(s.Out, n*s.Rows*s.Width)
	for r := range n * s.Rows {
		eval.Softmax(y[r*s.Width:(r+1)*s.Width], x[r*s.Width:(r+1)*s.Width])
	}
}

func (s *Softmax) String() string { return fmt.Sprintf("Softmax %dx%d", s.Rows, s.Width) }

// Transpose reorders each image between H·W·C (stored) and C·H·W (ONNX's
// logical flattening) order.
type Transpose struct {
	In, Out int
	C, HW   int
	ToCHW   bool
}

func (s *Transpose) inputs() []int { return []int{s.In} }

func (s *Transpose) prepare() {}

func (s *Transpose) run(st *State, n int) {
	size := s.C * s.HW
	x, y := st.bufs[s.In][:n*size], st.get(s.Out, n*size)
	for b := range n {
		src, dst := x[b*size:(b+1)*size], y[b*size:(b+1)*size]
		for p := range s.HW {
			for ch := range s.C {
				if s.ToCHW {
					dst[ch*s.HW+p] = src[p*s.C+ch]
				} else {
					dst[p*s.C+ch] = src[ch*s.HW+p]
				}
			}
		}
	}
}

func (s *Transpose) String() string {
	return fmt.Sprintf("Transpose %dx%d tochw=%v", s.HW, s.C, s.ToCHW)
}

// Repeat copies each value Times times: a grayscale image becomes the
// three equal channels an RGB model expects.
type Repeat struct {
	In, Out, Size, Times int
}

func (s *Repeat) inputs() []int { return []int{s.In} }

func (s *Repeat) prepare() {}

func (s *Repeat) run(st *State, n int) {
	x, y := st.bufs[s.In][:n*s.Size], st.get(s.Out, n*s.Size*s.Times)
	for i, v := range x {
		for k := range s.Times {
			y[i*s.Times+k] = v
		}
	}
}

func (s *Repeat) String() string { return fmt.Sprintf("Repeat %d x%d", s.Size, s.Times) }

// Pad surrounds each H×W map of C channels with rows and columns of Fill.
type Pad struct {
	In, Out        int
	C, H, W        int
	PT, PL, PB, PR int
	Fill           float32
}

func (s *Pad) inputs() []int { return []int{s.In} }

func (s *Pad) prepare() {}

func (s *Pad) run(st *State, n int) {
	oh, ow, c := s.H+s.PT+s.PB, s.W+s.PL+s.PR, s.C
	x, y := st.bufs[s.In][:n*s.H*s.W*c], st.get(s.Out, n*oh*ow*c)
	for i := range y {
		y[i] = s.Fill
	}
	for b := range n {
		for r := range s.H {
			src := x[((b*s.H+r)*s.W)*c:][:s.W*c]
			copy(y[((b*oh+r+s.PT)*ow+s.PL)*c:], src)
		}
	}
}

func (s *Pad) String() string {
	return fmt.Sprintf("Pad %dx%dx%d by %d,%d,%d,%d with %g", s.H, s.W, s.C, s.PT, s.PL, s.PB, s.PR, s.Fill)
}
