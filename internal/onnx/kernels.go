package onnx

import (
	"math"

	"github.com/fashion-classifier/fashion/internal/blas"
	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/kernels"
	"github.com/fashion-classifier/fashion/internal/parallel"
)

// colBudget bounds the im2col buffer (in float32s, 512 KiB): convolutions
// unfold as many images at once as fit (at least one), which keeps the
// patches in L2 cache for the product and memory flat whatever the batch
// size.
const colBudget = 1 << 17

// state holds the buffers of one run of a program. A program is immutable
// and shared; each concurrent run has its own state.
type state struct {
	bufs [][]float32
	// work holds one scratch buffer per worker goroutine (im2col
	// patches), shared by all steps since steps run one after another.
	work [][]float32
	// kern is the scratch memory of the kernels package's convolutions.
	kern kernels.Scratch
}

// scratch returns worker w's scratch buffer resized to size values.
func (s *state) scratch(w, size int) []float32 {
	for len(s.work) <= w {
		s.work = append(s.work, nil)
	}
	if cap(s.work[w]) < size {
		s.work[w] = make([]float32, size)
	}
	s.work[w] = s.work[w][:size]
	return s.work[w]
}

// get returns slot's buffer resized to size values, reallocating only when
// it is too small. Its contents are not cleared.
func (s *state) get(slot, size int) []float32 {
	if cap(s.bufs[slot]) < size {
		s.bufs[slot] = make([]float32, size)
	}
	s.bufs[slot] = s.bufs[slot][:size]
	return s.bufs[slot]
}

// step is one compiled operation: it reads and writes the buffers of st for
// a batch of n images.
type step interface {
	run(st *state, n int)
}

// unaryStep applies an element-wise function.
type unaryStep struct {
	in, out, size int
	act           kernels.Act
}

func (s *unaryStep) run(st *state, n int) {
	x, y := st.bufs[s.in][:n*s.size], st.get(s.out, n*s.size)
	parallel.For(len(y), 1<<15, func(lo, hi int) { kernels.ApplyAct(y[lo:hi], x[lo:hi], s.act) })
}

// convStep is a 2-D convolution (with groups, strides, dilations and
// asymmetric padding) over NHWC data, computed per group as im2col and one
// matrix product, followed by bias and an optional activation.
type convStep struct {
	in, out   int // slots
	c, h, w   int // input channels and size
	m, oh, ow int // output channels and size
	kh, kw    int
	sh, sw    int // strides
	dh, dw    int // dilations
	pt, pl    int // top and left padding (bottom and right follow from oh, ow)
	groups    int
	// wt holds the weights: for a depthwise convolution (one input and one
	// output channel per group) [kh·kw, m]; otherwise one [kh·kw·cg, mg]
	// matrix per group (rows ordered kernel row, kernel column, input
	// channel), the right-hand side of that group's product.
	wt   []float32
	bias []float32         // m values, or nil
	fn   kernels.Act       // applied after the bias
	ep   *kernels.Epilogue // bias and fn, see refresh
	// wino is the Winograd form of a 3×3 stride-1 padding-1 convolution
	// (see finish), or nil.
	wino *kernels.Winograd3x3
}

// finish prepares the step once its weights are final: a 3×3, stride-1,
// padding-1 convolution without groups and with at least 8 channels in and
// out gets its Winograd weights, which make it about twice as fast as
// im2col and a product.
func (s *convStep) finish() {
	if s.kh == 3 && s.kw == 3 && s.sh == 1 && s.sw == 1 && s.dh == 1 && s.dw == 1 && s.pt == 1 && s.pl == 1 &&
		s.oh == s.h && s.ow == s.w && s.groups == 1 && s.c >= 8 && s.m >= 8 {
		s.wino = kernels.NewWinograd3x3(s.wt, s.c, s.m)
	}
}

func (s *convStep) depthwise() bool { return s.groups == s.c && s.groups == s.m }

func (s *convStep) pointwise() bool {
	return s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.pt == 0 && s.pl == 0 &&
		s.groups == 1 && s.oh == s.h && s.ow == s.w
}

func (s *convStep) run(st *state, n int) {
	x := st.bufs[s.in][:n*s.h*s.w*s.c]
	y := st.get(s.out, n*s.oh*s.ow*s.m)
	switch {
	case s.wino != nil:
		s.wino.Forward(y, x, n, s.h, s.w, s.ep, &st.kern)
		return
	case s.depthwise():
		s.runDepthwise(x, y, n)
	case s.pointwise():
		blas.Gemm(false, false, n*s.h*s.w, s.m, s.c, 1, x, s.c, s.wt, s.m, 0, y, s.m)
	default:
		s.runUnfolded(st, x, y, n)
		return
	}
	s.ep.Apply(y)
}

// runUnfolded convolves by im2col and matrix products, chunk by chunk of
// images whose patches fit in colBudget. Large batches are split between
// workers that each take whole chunks with a serial product and finish
// each chunk's bias and activation while it is still in cache: one
// synchronisation per layer. Small batches go chunk by chunk with the
// product itself parallel.
func (s *convStep) runUnfolded(st *state, x, y []float32, n int) {
	cg, mg := s.c/s.groups, s.m/s.groups
	kdim := s.kh * s.kw * cg
	rowsPer := s.oh * s.ow
	chunk := max(1, colBudget/(rowsPer*kdim))
	do := func(w, n0, n1 int, gemm func(bool, bool, int, int, int, float32, []float32, int, []float32, int, float32, []float32, int), parallel bool) {
		col := st.scratch(w, (n1-n0)*rowsPer*kdim)
		out := y[n0*rowsPer*s.m : n1*rowsPer*s.m]
		for g := range s.groups {
			s.im2col(col, x, n0, n1, g*cg, cg, parallel)
			gemm(false, false, (n1-n0)*rowsPer, mg, kdim, 1, col, kdim,
				s.wt[g*kdim*mg:(g+1)*kdim*mg], mg, 0, out[g*mg:], s.m)
		}
		if parallel {
			s.ep.Apply(out)
		} else {
			s.ep.Rows(out)
		}
	}
	procs := parallel.Workers()
	if n < 2*procs {
		for n0 := 0; n0 < n; n0 += chunk {
			do(0, n0, min(n0+chunk, n), blas.Gemm, true)
		}
		return
	}
	for len(st.work) < procs {
		st.work = append(st.work, nil)
	}
	parallel.ForWorker(n, 1, func(w, lo, hi int) {
		for n0 := lo; n0 < hi; n0 += chunk {
			do(w, n0, min(n0+chunk, hi), blas.GemmSerial, false)
		}
	})
}

// im2col unfolds channels [c0, c0+cg) of images [n0, n1) of x into col: one
// row of kh·kw·cg values per output pixel, zero where the kernel overhangs
// the border.
func (s *convStep) im2col(col, x []float32, n0, n1, c0, cg int, split bool) {
	kdim := s.kh * s.kw * cg
	rowsPer := s.oh * s.ow
	minPer := 1
	if !split {
		minPer = (n1 - n0) * s.oh
	}
	parallel.For((n1-n0)*s.oh, minPer, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			n, oy := n0+r/s.oh, r%s.oh
			img := x[n*s.h*s.w*s.c : (n+1)*s.h*s.w*s.c]
			for ox := range s.ow {
				row := col[((n-n0)*rowsPer+oy*s.ow+ox)*kdim:][:kdim]
				iy0, ix0 := oy*s.sh-s.pt, ox*s.sw-s.pl
				for ky := range s.kh {
					iy := iy0 + ky*s.dh
					seg := row[ky*s.kw*cg : (ky+1)*s.kw*cg]
					if iy < 0 || iy >= s.h {
						clear(seg)
						continue
					}
					if cg == s.c && s.dw == 1 && ix0 >= 0 && ix0+s.kw <= s.w {
						// The whole kernel row is inside the image and
						// takes every channel: one contiguous copy.
						copy(seg, img[(iy*s.w+ix0)*s.c:(iy*s.w+ix0+s.kw)*s.c])
						continue
					}
					for kx := range s.kw {
						ix := ix0 + kx*s.dw
						dst := seg[kx*cg : (kx+1)*cg]
						if ix < 0 || ix >= s.w {
							clear(dst)
						} else {
							p := (iy*s.w+ix)*s.c + c0
							copy(dst, img[p:p+cg])
						}
					}
				}
			}
		}
	})
}

// runDepthwise convolves each channel with its own kernel directly, which
// beats unfolding when every patch would be a single channel.
func (s *convStep) runDepthwise(x, y []float32, n int) {
	c := s.c
	parallel.For(n*s.oh, 1, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			b, oy := r/s.oh, r%s.oh
			for ox := range s.ow {
				dst := y[((b*s.oh+oy)*s.ow+ox)*c:][:c]
				clear(dst)
				for ky := range s.kh {
					iy := oy*s.sh - s.pt + ky*s.dh
					if iy < 0 || iy >= s.h {
						continue
					}
					for kx := range s.kw {
						ix := ox*s.sw - s.pl + kx*s.dw
						if ix < 0 || ix >= s.w {
							continue
						}
						src := x[((b*s.h+iy)*s.w+ix)*c:][:c]
						wk := s.wt[(ky*s.kw+kx)*c:][:c]
						for j := range dst {
							dst[j] += src[j] * wk[j]
						}
					}
				}
			}
		}
	})
}

// outChannels is the number of output channels an absorbed affine map
// must have.
func (s *convStep) outChannels() int { return s.m }

// scaleShift folds y ← y·scale + shift (per output channel) into the
// weights and bias.
func (s *convStep) scaleShift(scale, shift []float32) {
	if s.depthwise() {
		for k := range s.wt {
			s.wt[k] *= scale[k%s.m]
		}
	} else {
		mg := s.m / s.groups
		kdim := len(s.wt) / s.m
		for g := range s.groups {
			blk := s.wt[g*kdim*mg : (g+1)*kdim*mg]
			for k := range blk {
				blk[k] *= scale[g*mg+k%mg]
			}
		}
	}
	s.bias = affineBias(s.bias, scale, shift)
	s.refresh()
}

func (s *convStep) setAct(a kernels.Act) { s.fn = a; s.refresh() }

// refresh rebuilds the epilogue after the bias or activation changed at
// compile time.
func (s *convStep) refresh() { s.ep = kernels.NewEpilogue(s.bias, s.fn) }

func (s *convStep) act() kernels.Act { return s.fn }

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

// gemmStep is a fully connected layer: y = x·W + bias with x of k features
// per image and W stored [k, m], followed by an optional activation.
type gemmStep struct {
	in, out, k, m int
	wt            []float32
	bias          []float32
	fn            kernels.Act       // applied after the bias
	ep            *kernels.Epilogue // bias and fn, see refresh
	// packed is wt packed once for GEMM (see finish): a single image
	// multiplies it row by row, with no packing per call.
	packed *blas.PackedB
}

// finish packs the final weights.
func (s *gemmStep) finish() { s.packed = blas.PackB(false, s.k, s.m, s.wt, s.m) }

func (s *gemmStep) run(st *state, n int) {
	x, y := st.bufs[s.in][:n*s.k], st.get(s.out, n*s.m)
	if n <= 2 && s.packed != nil {
		blas.GemmPacked(n, 1, x, s.k, s.packed, 0, y, s.m)
		s.ep.Rows(y)
		return
	}
	blas.Gemm(false, false, n, s.m, s.k, 1, x, s.k, s.wt, s.m, 0, y, s.m)
	s.ep.Apply(y)
}

func (s *gemmStep) outChannels() int { return s.m }

func (s *gemmStep) scaleShift(scale, shift []float32) {
	for k := range s.wt {
		s.wt[k] *= scale[k%s.m]
	}
	s.bias = affineBias(s.bias, scale, shift)
	s.refresh()
}

func (s *gemmStep) setAct(a kernels.Act) { s.fn = a; s.refresh() }

// refresh rebuilds the epilogue after the bias or activation changed at
// compile time.
func (s *gemmStep) refresh() { s.ep = kernels.NewEpilogue(s.bias, s.fn) }

func (s *gemmStep) act() kernels.Act { return s.fn }

// poolStep is a max or average pool over NHWC data with padding, strides,
// dilations (max only) and ceil-mode output sizes.
type poolStep struct {
	in, out        int
	isMax          bool
	includePad     bool // average over the whole (padded) window
	c, h, w        int
	oh, ow         int
	kh, kw, sh, sw int
	dh, dw         int
	pt, pl, pb, pr int
}

// plain2x2 reports whether the pool is a 2×2, stride-2 max pool without
// padding, which has a vectorised kernel.
func (s *poolStep) plain2x2() bool {
	return s.isMax && s.kh == 2 && s.kw == 2 && s.sh == 2 && s.sw == 2 && s.dh == 1 && s.dw == 1 &&
		s.pt == 0 && s.pl == 0 && 2*s.oh <= s.h && 2*s.ow <= s.w
}

func (s *poolStep) run(st *state, n int) {
	c := s.c
	x := st.bufs[s.in][:n*s.h*s.w*c]
	y := st.get(s.out, n*s.oh*s.ow*c)
	if s.plain2x2() {
		parallel.For(n*s.oh, 64, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				b, oy := r/s.oh, r%s.oh
				top := x[((b*s.h+2*oy)*s.w)*c:]
				kernels.MaxPool2x2Row(y[r*s.ow*c:(r+1)*s.ow*c], nil, top[:2*s.ow*c], top[s.w*c:s.w*c+2*s.ow*c], s.ow, c, 0, 0)
			}
		})
		return
	}
	parallel.For(n*s.oh, 1, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			b, oy := r/s.oh, r%s.oh
			for ox := range s.ow {
				dst := y[((b*s.oh+oy)*s.ow+ox)*c:][:c]
				if s.isMax {
					for j := range dst {
						dst[j] = float32(math.Inf(-1))
					}
				} else {
					clear(dst)
				}
				count := 0
				for ky := range s.kh {
					iy := oy*s.sh - s.pt + ky*s.dh
					if iy < 0 || iy >= s.h {
						continue
					}
					for kx := range s.kw {
						ix := ox*s.sw - s.pl + kx*s.dw
						if ix < 0 || ix >= s.w {
							continue
						}
						count++
						src := x[((b*s.h+iy)*s.w+ix)*c:][:c]
						if s.isMax {
							for j, v := range src {
								dst[j] = max(dst[j], v)
							}
						} else {
							for j, v := range src {
								dst[j] += v
							}
						}
					}
				}
				if s.isMax {
					continue
				}
				if s.includePad {
					// The window clipped to the padded image, as PyTorch
					// counts it.
					y0, x0 := oy*s.sh-s.pt, ox*s.sw-s.pl
					y1 := min(y0+s.kh, s.h+s.pb)
					x1 := min(x0+s.kw, s.w+s.pr)
					count = (y1 - max(y0, -s.pt)) * (x1 - max(x0, -s.pl))
				}
				if count > 0 {
					inv := 1 / float32(count)
					for j := range dst {
						dst[j] *= inv
					}
				}
			}
		}
	})
}

// globalPoolStep averages each channel over all positions.
type globalPoolStep struct {
	in, out int
	c, hw   int
}

func (s *globalPoolStep) run(st *state, n int) {
	c := s.c
	x, y := st.bufs[s.in][:n*s.hw*c], st.get(s.out, n*c)
	inv := 1 / float32(s.hw)
	parallel.For(n, 64, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			dst := y[b*c : (b+1)*c]
			clear(dst)
			for p := range s.hw {
				for j, v := range x[(b*s.hw+p)*c:][:c] {
					dst[j] += v
				}
			}
			for j := range dst {
				dst[j] *= inv
			}
		}
	})
}

// binOp is an element-wise arithmetic operator.
type binOp uint8

const (
	opAdd binOp = iota
	opSub
	opMul
	opDiv
)

func (op binOp) eval(a, b float32) float32 {
	switch op {
	case opAdd:
		return a + b
	case opSub:
		return a - b
	case opMul:
		return a * b
	}
	return a / b
}

// binStep computes out = a op b (or b op a when swap is set) where a has
// size values per image and b repeats with period bsize: b is either
// another value of the batch (bslot ≥ 0, bsize values per image) or a
// constant (bc, of length bsize). Broadcasting a channel vector over an
// NHWC map, or a bias over features, is a period equal to the channels.
type binStep struct {
	a, bslot, out int
	op            binOp
	swap          bool
	size, bsize   int
	bc            []float32
}

func (s *binStep) run(st *state, n int) {
	a := st.bufs[s.a][:n*s.size]
	b := s.bc
	if s.bslot >= 0 {
		b = st.bufs[s.bslot][:n*s.bsize]
	}
	y := st.get(s.out, n*s.size)
	blocks := n * s.size / s.bsize
	perImage := s.size / s.bsize
	parallel.For(blocks, max(1, 8192/s.bsize), func(lo, hi int) {
		for k := lo; k < hi; k++ {
			bb := b
			if s.bslot >= 0 {
				img := k / perImage
				bb = b[img*s.bsize : (img+1)*s.bsize]
			}
			av, yv := a[k*s.bsize:(k+1)*s.bsize], y[k*s.bsize:(k+1)*s.bsize]
			x, z := av, bb
			if s.swap {
				x, z = bb, av
			}
			switch s.op {
			case opAdd:
				for j := range yv {
					yv[j] = x[j] + z[j]
				}
			case opSub:
				for j := range yv {
					yv[j] = x[j] - z[j]
				}
			case opMul:
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

// concatStep joins values along the channel (innermost stored) axis: each
// image is rows of widths[i] values from input i.
type concatStep struct {
	ins    []int
	widths []int
	rows   int // rows per image: H·W for maps, 1 for features
	out    int
}

func (s *concatStep) run(st *state, n int) {
	total := 0
	for _, w := range s.widths {
		total += w
	}
	y := st.get(s.out, n*s.rows*total)
	off := 0
	for i, in := range s.ins {
		w := s.widths[i]
		x := st.bufs[in][:n*s.rows*w]
		for r := range n * s.rows {
			copy(y[r*total+off:r*total+off+w], x[r*w:(r+1)*w])
		}
		off += w
	}
}

// softmaxStep normalises rows of width values into probabilities.
type softmaxStep struct {
	in, out, rows, width int // rows per image
}

func (s *softmaxStep) run(st *state, n int) {
	x, y := st.bufs[s.in][:n*s.rows*s.width], st.get(s.out, n*s.rows*s.width)
	for r := range n * s.rows {
		eval.Softmax(y[r*s.width:(r+1)*s.width], x[r*s.width:(r+1)*s.width])
	}
}

// transposeStep reorders each image between H·W·C (stored) and C·H·W
// (ONNX's logical flattening) order.
type transposeStep struct {
	in, out int
	c, hw   int
	toCHW   bool
}

func (s *transposeStep) run(st *state, n int) {
	size := s.c * s.hw
	x, y := st.bufs[s.in][:n*size], st.get(s.out, n*size)
	for b := range n {
		src, dst := x[b*size:(b+1)*size], y[b*size:(b+1)*size]
		for p := range s.hw {
			for ch := range s.c {
				if s.toCHW {
					dst[ch*s.hw+p] = src[p*s.c+ch]
				} else {
					dst[p*s.c+ch] = src[ch*s.hw+p]
				}
			}
		}
	}
}

// repeatStep copies each value times times: a grayscale image becomes the
// three equal channels an RGB model expects.
type repeatStep struct {
	in, out, size, times int
}

func (s *repeatStep) run(st *state, n int) {
	x, y := st.bufs[s.in][:n*s.size], st.get(s.out, n*s.size*s.times)
	for i, v := range x {
		for k := range s.times {
			y[i*s.times+k] = v
		}
	}
}

// padStep surrounds each map with rows and columns of a constant.
type padStep struct {
	in, out        int
	c, h, w        int
	pt, pl, pb, pr int
	fill           float32
}

func (s *padStep) run(st *state, n int) {
	oh, ow, c := s.h+s.pt+s.pb, s.w+s.pl+s.pr, s.c
	x, y := st.bufs[s.in][:n*s.h*s.w*c], st.get(s.out, n*oh*ow*c)
	for i := range y {
		y[i] = s.fill
	}
	for b := range n {
		for r := range s.h {
			src := x[((b*s.h+r)*s.w)*c:][:s.w*c]
			copy(y[((b*oh+r+s.pt)*ow+s.pl)*c:], src)
		}
	}
}
