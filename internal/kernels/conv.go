package kernels

import (
	"fmt"

	"github.com/fashion-classifier/fashion/internal/blas"
	"github.com/fashion-classifier/fashion/internal/parallel"
)

// ColBudget bounds the im2col buffer of one worker (in float32s).
// Convolutions run over chunks of images whose unfolded patches fit in it
// (at least one image), which keeps memory use flat whatever the batch
// size. 512 KiB lets the patches and, in the backward pass, the unfolded
// output gradient stay in a 2 MiB L2 cache between being written and being
// multiplied: on the default network's layers this took 37% less CPU time
// than a 4 MiB budget, whose buffers spill to L3.
const ColBudget = 1 << 17

// ConvShape is the geometry of a 2-D convolution over NHWC images.
//
// Weights are stored, for a depthwise convolution (Groups = C = M), as
// [KH·KW, C]; otherwise as one [KH·KW·C/Groups, M/Groups] matrix per group
// (rows ordered kernel row, kernel column, input channel), the right-hand
// side of that group's product.
type ConvShape struct {
	C, H, W   int // input channels and size
	M, OH, OW int // output channels and size
	KH, KW    int // kernel size
	SH, SW    int // strides
	DH, DW    int // dilations (1 for none)
	PT, PL    int // top and left padding (bottom and right follow from OH, OW)
	Groups    int
}

// SquareConv is the shape of a convolution with a k×k kernel, equal
// strides and padding on all sides, and no dilation or groups, over h×w
// images.
func SquareConv(c, h, w, m, k, stride, pad int) ConvShape {
	return ConvShape{
		C: c, H: h, W: w, M: m,
		OH: (h+2*pad-k)/stride + 1, OW: (w+2*pad-k)/stride + 1,
		KH: k, KW: k, SH: stride, SW: stride, DH: 1, DW: 1, PT: pad, PL: pad, Groups: 1,
	}
}

// Check reports whether the shape is consistent: positive sizes, channels
// divisible by the groups.
func (s ConvShape) Check() error {
	if s.C < 1 || s.H < 1 || s.W < 1 || s.M < 1 || s.OH < 1 || s.OW < 1 || s.KH < 1 || s.KW < 1 ||
		s.SH < 1 || s.SW < 1 || s.DH < 1 || s.DW < 1 || s.PT < 0 || s.PL < 0 || s.Groups < 1 ||
		s.C%s.Groups != 0 || s.M%s.Groups != 0 {
		return fmt.Errorf("kernels: invalid convolution shape %+v", s)
	}
	return nil
}

// WeightLen is the number of weights of the convolution.
func (s ConvShape) WeightLen() int { return s.KH * s.KW * s.C / s.Groups * s.M }

// Depthwise reports whether each channel has its own kernel.
func (s ConvShape) Depthwise() bool { return s.Groups == s.C && s.Groups == s.M && s.Groups > 1 }

// Pointwise reports whether the convolution is a plain 1×1 product, where
// the input already is the im2col matrix.
func (s ConvShape) Pointwise() bool {
	return s.KH == 1 && s.KW == 1 && s.SH == 1 && s.SW == 1 && s.PT == 0 && s.PL == 0 &&
		s.Groups == 1 && s.OH == s.H && s.OW == s.W
}

// Same reports whether the convolution is a stride-1 "same" convolution
// with an odd square kernel and no groups or dilation: the shape the
// padded layout (see padLayout) and the flipped-kernel input gradient
// handle.
func (s ConvShape) Same() bool {
	return s.Groups == 1 && s.KH == s.KW && s.KH%2 == 1 && s.SH == 1 && s.SW == 1 && s.DH == 1 && s.DW == 1 &&
		2*s.PT == s.KH-1 && 2*s.PL == s.KW-1 && s.OH == s.H && s.OW == s.W
}

// MACs is the number of multiply-adds per image.
func (s ConvShape) MACs() int { return s.OH * s.OW * s.M * s.KH * s.KW * s.C / s.Groups }

// ConvPath selects how a convolution is computed.
type ConvPath uint8

// The ways of computing a convolution.
const (
	ConvAuto   ConvPath = iota // the faster method for the shape
	ConvIm2col                 // unfold patches, then one product per group
	ConvPadded                 // read patches in place from padded images (Same shapes only)
)

// Conv is a convolution of a given shape with the method pinned down.
// Zero Path and MaxChunk choose by shape, as production code should.
type Conv struct {
	ConvShape
	Path     ConvPath // forces a method, for tests and benchmarks
	MaxChunk int      // if > 0, caps the images per chunk, for tests
}

// padded reports whether a batch of n images goes through the padded
// layout rather than im2col. It needs a Same convolution, and is used
// where it costs less: with several input channels (one channel gives
// K·K-float patch rows, too short a sum for the product to run well), with
// feature maps large enough that the gaps stay a small share of the
// arithmetic, and for batches split between workers (the product there is
// serial).
func (c Conv) padded(n int) bool {
	switch c.Path {
	case ConvIm2col:
		return false
	case ConvPadded:
		return c.Same()
	}
	return c.Same() && c.C >= 8 && c.H*c.W >= padMinPixels && n >= 2*parallel.Workers()
}

// padMinPixels is the smallest feature map (h·w) convolved in the padded
// layout. Its gaps cost (h+w+1)/(h·w) more arithmetic for 3×3 kernels: 7%
// at 28×28, 15% at 14×14, 31% at 7×7, where im2col (whose relative cost
// falls as the number of output channels grows) measured as fast on the
// default network's 64→128 layer, and the simpler path is kept.
const padMinPixels = 100

// capChunk returns n images per chunk, at least 1 and at most MaxChunk if
// that is set.
func (c Conv) capChunk(n int) int {
	if c.MaxChunk > 0 {
		n = min(n, c.MaxChunk)
	}
	return max(1, n)
}

// Forward computes y (n×OH×OW×M) = conv(x (n×H×W×C), w) followed by ep
// (nil for none), on up to parallel.Workers goroutines.
func (c Conv) Forward(y, x []float32, n int, w []float32, ep *Epilogue, sc *Scratch) {
	if sc == nil {
		sc = new(Scratch)
	}
	s := c.ConvShape
	x, y = x[:n*s.H*s.W*s.C], y[:n*s.OH*s.OW*s.M]
	_ = w[:s.WeightLen()]
	switch {
	case s.Depthwise():
		DepthwiseForward(y, x, n, s, w)
	case s.Pointwise():
		blas.Gemm(false, false, n*s.H*s.W, s.M, s.C, 1, x, s.C, w, s.M, 0, y, s.M)
	case c.padded(n):
		c.forwardPadded(y, x, n, w, ep, sc)
		return
	default:
		c.forwardIm2col(y, x, n, w, ep, sc)
		return
	}
	ep.Apply(y)
}

// chunkFunc computes images [n0, n1) as worker w; gemm is blas.Gemm when
// the chunks go one after another (the product is then parallel) and
// blas.GemmSerial when workers share the chunks. first says the chunk is
// the worker's first.
type chunkFunc func(w int, gemm gemmFunc, n0, n1 int, first bool)

// gemmFunc is blas.Gemm or blas.GemmSerial.
type gemmFunc func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// chunks runs fn over the images [0, n) in chunks of step images. Large
// batches are shared between workers that each take whole chunks, in turn
// from a counter, and compute them with a serial matrix product: one
// synchronisation per layer instead of several per chunk, and a worker
// slowed down by other load simply takes fewer chunks. Small batches
// (single-image inference) go chunk by chunk with the product itself
// parallel. When ran is not nil (one flag per worker, all false) it
// records which workers computed at least one chunk, and first tells fn
// that a chunk is its worker's first; inference passes nil and allocates
// nothing.
func chunks(n, step int, sc *Scratch, ran []bool, fn chunkFunc) {
	procs := parallel.Workers()
	if n < 2*procs {
		for n0 := 0; n0 < n; n0 += step {
			fn(0, blas.Gemm, n0, min(n0+step, n), n0 == 0)
		}
		if ran != nil {
			ran[0] = n > 0
		}
		return
	}
	// At least four chunks per worker, so that the last ones to finish
	// leave little idle time.
	step = min(step, (n+4*procs-1)/(4*procs))
	sc.Reserve(procs)
	parallel.Run(procs, (n+step-1)/step, func(w, t int) {
		n0 := t * step
		first := ran != nil && !ran[w]
		fn(w, blas.GemmSerial, n0, min(n0+step, n), first)
		if ran != nil {
			ran[w] = true
		}
	})
}

// chunk is how many images are unfolded at once.
func (c Conv) chunk() int {
	per := c.OH * c.OW * c.KH * c.KW * c.C / c.Groups
	return c.capChunk(ColBudget / per)
}

func (c Conv) forwardIm2col(y, x []float32, n int, w []float32, ep *Epilogue, sc *Scratch) {
	s := c.ConvShape
	cg, mg := s.C/s.Groups, s.M/s.Groups
	kdim := s.KH * s.KW * cg
	rowsPer := s.OH * s.OW
	chunks(n, c.chunk(), sc, nil, func(wk int, gemm gemmFunc, n0, n1 int, _ bool) {
		col := sc.Floats(wk, slotA, (n1-n0)*rowsPer*kdim)
		out := y[n0*rowsPer*s.M : n1*rowsPer*s.M]
		serial := wk > 0 || n >= 2*parallel.Workers()
		for g := range s.Groups {
			Im2col(col, x, n0, n1, g*cg, cg, s, !serial)
			gemm(false, false, (n1-n0)*rowsPer, mg, kdim, 1, col, kdim, w[g*kdim*mg:(g+1)*kdim*mg], mg, 0, out[g*mg:], s.M)
		}
		// Bias and activation while the chunk is still in cache.
		if serial {
			ep.Rows(out)
		} else {
			ep.Apply(out)
		}
	})
}

// Im2col unfolds channels [c0, c0+cg) of images [n0, n1) of x into col:
// one row of KH·KW·cg values per output pixel (kernel row, kernel column,
// channel), zero where the kernel overhangs the border. With split, the
// rows are shared between workers.
func Im2col(col, x []float32, n0, n1, c0, cg int, s ConvShape, split bool) {
	if s.C == 1 && s.KH == 3 && s.KW == 3 && s.Same() {
		im2col3x3Single(col, x, n0, n1, s.H, s.W)
		return
	}
	minPer := 1
	if !split {
		minPer = (n1 - n0) * s.OH
	}
	parallel.For((n1-n0)*s.OH, minPer, func(lo, hi int) {
		im2colRows(col, x, n0, lo, hi, c0, cg, s)
	})
}

// im2colRows is Im2col for output rows [lo, hi) of the chunk starting at
// image n0.
func im2colRows(col, x []float32, n0, lo, hi, c0, cg int, s ConvShape) {
	kdim := s.KH * s.KW * cg
	rowsPer := s.OH * s.OW
	for r := lo; r < hi; r++ {
		n, oy := n0+r/s.OH, r%s.OH
		img := x[n*s.H*s.W*s.C : (n+1)*s.H*s.W*s.C]
		for ox := range s.OW {
			row := col[((n-n0)*rowsPer+oy*s.OW+ox)*kdim:][:kdim]
			iy0, ix0 := oy*s.SH-s.PT, ox*s.SW-s.PL
			for ky := range s.KH {
				iy := iy0 + ky*s.DH
				seg := row[ky*s.KW*cg : (ky+1)*s.KW*cg]
				if iy < 0 || iy >= s.H {
					clear(seg)
					continue
				}
				if cg == s.C && s.DW == 1 && ix0 >= 0 && ix0+s.KW <= s.W {
					// The whole kernel row is inside the image and takes
					// every channel: one contiguous copy.
					copy(seg, img[(iy*s.W+ix0)*s.C:(iy*s.W+ix0+s.KW)*s.C])
					continue
				}
				for kx := range s.KW {
					ix := ix0 + kx*s.DW
					dst := seg[kx*cg : (kx+1)*cg]
					if ix < 0 || ix >= s.W {
						clear(dst)
					} else {
						p := (iy*s.W+ix)*s.C + c0
						copy(dst, img[p:p+cg])
					}
				}
			}
		}
	}
}

// Unpadded is the shape of s over its input padded on every side it
// overhangs (PadU8): the same output, no padding, and an input of
// exactly the rows and columns the kernel reads.
func (s ConvShape) Unpadded() ConvShape {
	u := s
	u.H, u.W = (s.OH-1)*s.SH+(s.KH-1)*s.DH+1, (s.OW-1)*s.SW+(s.KW-1)*s.DW+1
	u.PT, u.PL = 0, 0
	return u
}

// PadU8 copies the map of codes x (s.H×s.W×s.C) into dst (the input of
// s.Unpadded()) with the code z where s's kernel overhangs the border:
// the int8 convolution pads a chunk of images once, so that im2col
// copies whole kernel rows for every output pixel.
func PadU8(dst, x []uint8, z uint8, s ConvShape) {
	padRowsU8(dst, z, s, func(row []uint8, from int) { copy(row, x[from:from+len(row)]) })
}

// PadQuantizeU8 is PadU8 from the float32 map x, quantized on the way as
// blas.QuantizeU8s does (scale 1/inv, zero point z): one pass over a
// chunk of a float32 input instead of a quantized copy of the whole
// batch, then the padded one.
func PadQuantizeU8(dst []uint8, x []float32, inv float32, z uint8, s ConvShape) {
	padRowsU8(dst, z, s, func(row []uint8, from int) { blas.QuantizeU8s(row, x[from:from+len(row)], inv, z) })
}

// padRowsU8 writes the rows of the padded map dst (PadU8): z where s's
// kernel overhangs the border, and fill(row, from) for the part of a
// row that comes from the input, whose first value is the input's from.
func padRowsU8(dst []uint8, z uint8, s ConvShape, fill func(row []uint8, from int)) {
	u := s.Unpadded()
	c := s.C
	for y := range u.H {
		row := dst[y*u.W*c : (y+1)*u.W*c]
		iy := y - s.PT
		if iy < 0 || iy >= s.H {
			fillU8(row, z)
			continue
		}
		// Columns [lo, hi) of the padded row come from the input (none
		// when the padding is wider than the kernel reaches).
		lo, hi := min(s.PL, u.W), min(u.W, s.PL+s.W)
		if hi <= lo {
			fillU8(row, z)
			continue
		}
		fillU8(row[:lo*c], z)
		fill(row[lo*c:hi*c], (iy*s.W+lo-s.PL)*c)
		fillU8(row[hi*c:], z)
	}
}

// fillU8 sets every byte of b to z, by doubling copies (a loop of byte
// stores is not vectorised; copy is).
func fillU8(b []uint8, z uint8) {
	if len(b) == 0 {
		return
	}
	b[0] = z
	for i := 1; i < len(b); i *= 2 {
		copy(b[i:], b[:i])
	}
}

// Im2colU8 unfolds output rows [lo, hi) of the images from n0 of the
// uint8 codes x into col (one row of KH·KW·C codes per output pixel, as
// Im2col): the int8 convolution's unfolding, called by the workers of
// one chunk of images. s must have no padding and every window inside
// the map, as s.Unpadded() (PadU8 makes such an input): the kernel rows
// of a row of output pixels are then copied by one call, or a channel
// vector at a time where the kernel is dilated.
func Im2colU8(col, x []uint8, n0, lo, hi int, s ConvShape) {
	if s.PT != 0 || s.PL != 0 || s.Unpadded().H > s.H || s.Unpadded().W > s.W {
		panic(fmt.Sprintf("kernels.Im2colU8: shape %+v overhangs its input: pad it first (PadU8, Unpadded)", s))
	}
	kdim, run, c := s.KH*s.KW*s.C, s.KW*s.C, s.C
	for r := lo; r < hi; r++ {
		n, oy := n0+r/s.OH, r%s.OH
		img := x[n*s.H*s.W*c : (n+1)*s.H*s.W*c]
		out := col[r*s.OW*kdim : (r+1)*s.OW*kdim]
		top := oy * s.SH * s.W * c
		if s.DW == 1 {
			copyRunsU8(out, img[top:], s.OW, s.SW*c, s.KH, s.DH*s.W*c, run)
			continue
		}
		for ox := range s.OW {
			for ky := range s.KH {
				for kx := range s.KW {
					p := top + (ky*s.DH*s.W+ox*s.SW+kx*s.DW)*c
					copy(out[(ox*s.KH*s.KW+ky*s.KW+kx)*c:][:c], img[p:p+c])
				}
			}
		}
	}
}

// copyRunsGo is copyRunsU8 in Go, and its definition: for each of n
// pixels p, its kh runs of run bytes src[p·step + ky·rowStep:][:run] go,
// one after the other, to dst (n·kh·run bytes).
func copyRunsGo(dst, src []uint8, n, step, kh, rowStep, run int) {
	for p := range n {
		for ky := range kh {
			o := p*step + ky*rowStep
			copy(dst[(p*kh+ky)*run:][:run], src[o:o+run])
		}
	}
}

// im2col3x3Single is im2col for the first layer's shape, a 3×3 same
// convolution of one channel, where the general version's copies are of
// one float each and cost more in call overhead than in data moved: it
// builds each patch row from nine loads of a zero-padded image row triple.
func im2col3x3Single(col, x []float32, n0, n1, h, w int) {
	// Three padded rows (w+2 values each) around the current output row.
	var stack [3 * 64]float32
	pad := stack[:0]
	if 3*(w+2) > len(stack) {
		pad = make([]float32, 3*(w+2))
	} else {
		pad = stack[:3*(w+2)]
	}
	for n := n0; n < n1; n++ {
		img := x[n*h*w : (n+1)*h*w]
		out := col[(n-n0)*h*w*9:]
		for oy := range h {
			for r := range 3 {
				row := pad[r*(w+2) : (r+1)*(w+2)]
				if iy := oy + r - 1; iy < 0 || iy >= h {
					clear(row)
				} else {
					row[0], row[w+1] = 0, 0
					copy(row[1:w+1], img[iy*w:(iy+1)*w])
				}
			}
			top, mid, bot := pad[:w+2], pad[w+2:2*(w+2)], pad[2*(w+2):]
			dst := out[oy*w*9 : (oy+1)*w*9]
			for ox := range w {
				d := (*[9]float32)(dst[ox*9:])
				t, m, b := (*[3]float32)(top[ox:]), (*[3]float32)(mid[ox:]), (*[3]float32)(bot[ox:])
				d[0], d[1], d[2] = t[0], t[1], t[2]
				d[3], d[4], d[5] = m[0], m[1], m[2]
				d[6], d[7], d[8] = b[0], b[1], b[2]
			}
		}
	}
}

// col2im adds the patch gradients in col back onto the input pixels of
// images [n0, n1) of dx they came from: the adjoint of Im2col (one group,
// no dilation).
func col2im(dx, col []float32, n0, n1 int, s ConvShape) {
	kdim := s.KH * s.KW * s.C
	ci := s.C
	for n := n0; n < n1; n++ {
		img := dx[n*s.H*s.W*ci : (n+1)*s.H*s.W*ci]
		src := col[(n-n0)*s.OH*s.OW*kdim:]
		for oy := range s.OH {
			for ox := range s.OW {
				row := src[(oy*s.OW+ox)*kdim : (oy*s.OW+ox+1)*kdim]
				iy0, ix0 := oy*s.SH-s.PT, ox*s.SW-s.PL
				for ky := range s.KH {
					iy := iy0 + ky
					if iy < 0 || iy >= s.H {
						continue
					}
					for kx := range s.KW {
						ix := ix0 + kx
						if ix < 0 || ix >= s.W {
							continue
						}
						d := img[(iy*s.W+ix)*ci : (iy*s.W+ix+1)*ci]
						r := row[(ky*s.KW+kx)*ci : (ky*s.KW+kx+1)*ci]
						for i := range d {
							d[i] += r[i]
						}
					}
				}
			}
		}
	}
}

// FlipWeights rearranges w ([K·K·C, M]) for the input gradient of a Same
// convolution: [K·K·M, C] with the kernel turned by 180°, so that
// dx = im2col(dy) · flipped, i.e. dx is the Same convolution of dy (M
// channels) by dst.
func FlipWeights(dst, w []float32, s ConvShape) {
	k, in, out := s.KH, s.C, s.M
	for ky := range k {
		for kx := range k {
			src := ((k-1-ky)*k + (k - 1 - kx)) * in * out
			d := (ky*k + kx) * out * in
			for ci := range in {
				for co := range out {
					dst[d+co*in+ci] = w[src+ci*out+co]
				}
			}
		}
	}
}

// Backward computes the weight gradient dw (overwritten) and, when dx is
// not nil, the input gradient dx (overwritten) of the convolution of x
// (n images) by w, given the output gradient dy (already multiplied by the
// derivative of any activation). It supports one group without dilation,
// or depthwise convolutions.
func (c Conv) Backward(dx, dw, x, dy []float32, n int, w []float32, sc *Scratch) {
	if sc == nil {
		sc = new(Scratch)
	}
	s := c.ConvShape
	x, dy = x[:n*s.H*s.W*s.C], dy[:n*s.OH*s.OW*s.M]
	if dx != nil {
		dx = dx[:len(x)]
	}
	dw = dw[:s.WeightLen()]
	if s.Depthwise() {
		DepthwiseBackward(dx, dw, x, dy, n, s, w, sc)
		return
	}
	if s.Groups != 1 || s.DH != 1 || s.DW != 1 {
		panic(fmt.Sprintf("kernels: Conv.Backward of %+v: groups and dilation are not supported", s))
	}
	kdim := s.KH * s.KW * s.C
	if s.Pointwise() {
		rows := n * s.H * s.W
		blas.Gemm(true, false, kdim, s.M, rows, 1, x, kdim, dy, s.M, 0, dw, s.M)
		if dx != nil {
			blas.Gemm(false, true, rows, kdim, s.M, 1, dy, s.M, w, s.M, 0, dx, kdim)
		}
		return
	}
	var flipped []float32
	if dx != nil && s.Same() {
		// Worker 0's flip slot is read by all workers and written by none.
		flipped = sc.Floats(0, slotE, len(w))
		FlipWeights(flipped, w, s)
	}
	ran := make([]bool, parallel.Workers())
	if c.padded(n) {
		c.backwardPadded(dx, x, dy, n, flipped, sc, ran)
	} else {
		c.backwardIm2col(dx, x, dy, n, w, flipped, sc, ran)
	}
	first := true
	for wk, r := range ran {
		if !r {
			continue
		}
		part := sc.Floats(wk, slotD, len(dw))
		if first {
			copy(dw, part)
			first = false
		} else {
			blas.Axpy(1, part, dw)
		}
	}
	if first {
		clear(dw)
	}
}

// backwardIm2col is Backward's weight gradient (into each worker's slotD)
// and input gradient through im2col.
func (c Conv) backwardIm2col(dx, x, dy []float32, n int, w, flipped []float32, sc *Scratch, ran []bool) {
	s := c.ConvShape
	kdim := s.KH * s.KW * s.C
	rowsPer := s.OH * s.OW
	if dx != nil && flipped == nil {
		clear(dx) // col2im accumulates
	}
	// The input gradient of a Same convolution: the convolution of dy by
	// the flipped kernel, over dy's M channels.
	back := SquareConv(s.M, s.H, s.W, s.C, s.KH, 1, s.PT)
	chunks(n, c.chunk(), sc, ran, func(wk int, gemm gemmFunc, n0, n1 int, first bool) {
		rows := (n1 - n0) * rowsPer
		col := sc.Floats(wk, slotA, rows*kdim)
		Im2col(col, x, n0, n1, 0, s.C, s, false)
		dyc := dy[n0*rowsPer*s.M:]
		beta := float32(1)
		if first {
			beta = 0
		}
		gemm(true, false, kdim, s.M, rows, 1, col, kdim, dyc, s.M, beta, sc.Floats(wk, slotD, len(w)), s.M)
		switch {
		case dx == nil:
		case flipped != nil:
			// An im2col of dy and one product, which copies memory where
			// col2im would scatter-add it.
			dcol := sc.Floats(wk, slotB, (n1-n0)*s.H*s.W*s.KH*s.KW*s.M)
			Im2col(dcol, dy, n0, n1, 0, s.M, back, false)
			gemm(false, false, (n1-n0)*s.H*s.W, s.C, s.KH*s.KW*s.M, 1, dcol, s.KH*s.KW*s.M, flipped, s.C, 0, dx[n0*s.H*s.W*s.C:], s.C)
		default:
			gemm(false, true, rows, kdim, s.M, 1, dyc, s.M, w, s.M, 0, col, kdim)
			col2im(dx, col, n0, n1, s)
		}
	})
}
