package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"

	"github.com/fashion-classifier/fashion/internal/blas"
	"github.com/fashion-classifier/fashion/internal/kernels"
	"github.com/fashion-classifier/fashion/internal/parallel"
)

// colBudget bounds the im2col buffer (in float32s). Convolutions run over
// chunks of images whose unfolded patches fit in it (at least one image),
// which keeps memory use flat whatever the batch size. 512 KiB lets the
// patches and, in the backward pass, the unfolded output gradient stay in
// a 2 MiB L2 cache between being written and being multiplied: on the
// default network's layers this took 37% less CPU time than a 4 MiB
// budget, whose buffers spill to L3.
const colBudget = 1 << 17

// Conv2D is a 2-D convolution with square kernels, computed per chunk of
// images as im2col followed by one matrix product or, for stride-1 same
// convolutions where it is cheaper, as K products that read the patches in
// place from zero-padded images (see convpad.go). Its weight is stored as
// [K·K·In, Out] (kernel row, kernel column, input channel; output
// channel), which is the right-hand matrix of those products.
type Conv2D struct {
	In, Out, K, Stride, Pad int
	// NoInputGrad skips the input gradient, for the first layer of a
	// network where nobody needs it.
	NoInputGrad bool
	// ReLU applies max(·, 0) to the output, in the same pass as the bias;
	// FoldBatchNorm sets it when it folds a batch norm with a fused ReLU.
	ReLU bool

	W, B *Param // B is nil when the layer has no bias

	x           *Tensor
	out, dx     *Tensor
	dmask       *Tensor
	ones, shift []float32  // scale and shift of the epilogue's affine kernel
	work        []convWork // per-worker scratch, see chunks
	flip        []float32  // W turned for the input gradient, see flipped
	path        convPath   // forces a method, for tests and benchmarks
	maxChunk    int        // if > 0, caps the images per chunk, for tests
}

// convPath selects how a convolution is computed.
type convPath int

const (
	pathAuto   convPath = iota // the faster method for the shape, see padded
	pathIm2col                 // unfold patches, then one product
	pathPadded                 // read patches in place from padded images
)

// NewConv2D returns a convolution with He-normal initial weights, the
// initialisation that keeps activations' variance stable under ReLU.
func NewConv2D(rng *rand.Rand, in, out, k, stride, pad int, bias bool) *Conv2D {
	c := &Conv2D{In: in, Out: out, K: k, Stride: stride, Pad: pad}
	c.W = newParam("weight", Weight, k*k*in, out)
	std := math.Sqrt(2 / float64(k*k*in))
	for i := range c.W.Value {
		c.W.Value[i] = float32(rng.NormFloat64() * std)
	}
	if bias {
		c.B = newParam("bias", NoDecay, out)
	}
	return c
}

// Params returns the weight and, if present, the bias.
func (c *Conv2D) Params() []*Param {
	if c.B == nil {
		return []*Param{c.W}
	}
	return []*Param{c.W, c.B}
}

func (c *Conv2D) outSize(h, w int) (int, int) {
	return (h+2*c.Pad-c.K)/c.Stride + 1, (w+2*c.Pad-c.K)/c.Stride + 1
}

// pointwise reports whether the convolution is a plain 1×1 product, where
// the input already is the im2col matrix.
func (c *Conv2D) pointwise() bool { return c.K == 1 && c.Stride == 1 && c.Pad == 0 }

// same reports whether the convolution keeps the spatial size with
// stride 1 (pad = (K−1)/2 for odd K).
func (c *Conv2D) same() bool { return c.Stride == 1 && 2*c.Pad == c.K-1 }

// flipped returns the weight rearranged for the input gradient of a same
// convolution: [K·K·Out, In] with the kernel turned by 180°, so that
// dx = im2col(dy) · flipped.
func (c *Conv2D) flipped() []float32 {
	if len(c.flip) > 0 {
		return c.flip
	}
	k, in, out := c.K, c.In, c.Out
	if cap(c.flip) < len(c.W.Value) {
		c.flip = make([]float32, len(c.W.Value))
	}
	c.flip = c.flip[:len(c.W.Value)]
	for ky := range k {
		for kx := range k {
			src := ((k-1-ky)*k + (k - 1 - kx)) * in * out
			dst := (ky*k + kx) * out * in
			for ci := range in {
				for co := range out {
					c.flip[dst+co*in+ci] = c.W.Value[src+ci*out+co]
				}
			}
		}
	}
	return c.flip
}

// chunk is how many images are unfolded at once.
func (c *Conv2D) chunk(oh, ow int) int {
	per := oh * ow * c.K * c.K * c.In
	return c.capChunk(colBudget / per)
}

// capChunk returns n images per chunk, at least 1 and at most maxChunk if
// that is set.
func (c *Conv2D) capChunk(n int) int {
	if c.maxChunk > 0 {
		n = min(n, c.maxChunk)
	}
	return max(1, n)
}

// Forward convolves x, which must have c.In channels.
func (c *Conv2D) Forward(x *Tensor, train bool) *Tensor {
	if x.C != c.In {
		panic(fmt.Sprintf("nn: Conv2D with %d input channels got %v", c.In, x))
	}
	c.x = x
	c.prepareEpilogue()
	oh, ow := c.outSize(x.H, x.W)
	out := reuse(&c.out, x.N, oh, ow, c.Out)
	kdim := c.K * c.K * c.In
	rowsPer := oh * ow
	switch {
	case c.pointwise():
		blas.Gemm(false, false, x.N*rowsPer, c.Out, kdim, 1, x.Data, kdim, c.W.Value, c.Out, 0, out.Data, c.Out)
	case c.padded(x.N, x.H, x.W):
		c.forwardPadded(x, out)
		return out
	default:
		c.chunks(x.N, oh, ow, func(ws *convWork, gemm gemmFunc, n0, n1 int, _ bool) {
			col := im2col(&ws.col, x, n0, n1, c.K, c.Stride, c.Pad, oh, ow)
			chunk := out.Data[n0*rowsPer*c.Out : n1*rowsPer*c.Out]
			gemm(false, false, (n1-n0)*rowsPer, c.Out, kdim, 1, col, kdim, c.W.Value, c.Out, 0, chunk, c.Out)
			// Bias and ReLU while the chunk is still in cache.
			c.epilogue(chunk)
		})
		return out
	}
	parallel.For(len(out.Data)/c.Out, 1024, func(lo, hi int) {
		c.epilogue(out.Data[lo*c.Out : hi*c.Out])
	})
	return out
}

// prepareEpilogue sets the epilogue's per-channel scale (ones) and shift
// (the bias, or zeros) before workers share them.
func (c *Conv2D) prepareEpilogue() {
	if len(c.ones) != c.Out {
		c.ones, c.shift = make([]float32, c.Out), make([]float32, c.Out)
		for i := range c.ones {
			c.ones[i] = 1
		}
	}
	if c.B != nil {
		copy(c.shift, c.B.Value)
	}
}

// epilogue adds the bias (if any) and applies the ReLU (if set) to rows
// of the output; prepareEpilogue must have run.
func (c *Conv2D) epilogue(rows []float32) {
	if c.B != nil || c.ReLU {
		kernels.Affine(rows, rows, c.Out, c.ones, c.shift, c.ReLU)
	}
}

// Backward computes the weight (and bias) gradients and, unless
// NoInputGrad is set, the input gradient.
func (c *Conv2D) Backward(dy *Tensor) *Tensor {
	x := c.x
	oh, ow := dy.H, dy.W
	kdim := c.K * c.K * c.In
	rowsPer := oh * ow
	if c.ReLU {
		masked := reuse(&c.dmask, dy.N, dy.H, dy.W, dy.C)
		for i, d := range dy.Data {
			masked.Data[i] = d * positive(c.out.Data[i])
		}
		dy = masked
	}
	if c.B != nil {
		sumRows(c.B.Grad, dy.Data, c.Out)
	}
	var dx *Tensor
	if !c.NoInputGrad {
		dx = reuse(&c.dx, x.N, x.H, x.W, x.C)
	}
	if c.pointwise() {
		rows := x.N * rowsPer
		blas.Gemm(true, false, kdim, c.Out, rows, 1, x.Data, kdim, dy.Data, c.Out, 0, c.W.Grad, c.Out)
		if dx != nil {
			blas.Gemm(false, true, rows, kdim, c.Out, 1, dy.Data, c.Out, c.W.Value, c.Out, 0, dx.Data, kdim)
		}
		return dx
	}
	c.flip = c.flip[:0] // the weights changed since the last backward pass
	if dx != nil && c.same() {
		c.flipped()
	}
	if c.padded(x.N, x.H, x.W) {
		c.backwardPadded(x, dy, dx)
	} else {
		c.backwardIm2col(x, dy, dx)
	}
	clear(c.W.Grad)
	for _, ws := range c.work {
		if ws.ran {
			axpy(c.W.Grad, ws.dW)
		}
	}
	return dx
}

// backwardIm2col is Backward's weight gradient (into each worker's dW)
// and, if dx is not nil, input gradient through im2col. dy is already
// masked by the ReLU.
func (c *Conv2D) backwardIm2col(x, dy, dx *Tensor) {
	oh, ow := dy.H, dy.W
	kdim := c.K * c.K * c.In
	rowsPer := oh * ow
	if dx != nil && !c.same() {
		clear(dx.Data) // col2im accumulates
	}
	c.chunks(x.N, oh, ow, func(ws *convWork, gemm gemmFunc, n0, n1 int, first bool) {
		rows := (n1 - n0) * rowsPer
		col := im2col(&ws.col, x, n0, n1, c.K, c.Stride, c.Pad, oh, ow)
		dyc := dy.Data[n0*rowsPer*c.Out:]
		beta := float32(1)
		if first {
			beta = 0
		}
		gemm(true, false, kdim, c.Out, rows, 1, col, kdim, dyc, c.Out, beta, ws.dW, c.Out)
		switch {
		case dx == nil:
		case c.same():
			// The input gradient of a stride-1 "same" convolution is the
			// convolution of dy with the kernel turned by 180° and its
			// channel axes swapped: an im2col of dy and one product, which
			// copies memory where col2im would scatter-add it.
			dcol := im2col(&ws.dcol, dy, n0, n1, c.K, 1, c.Pad, x.H, x.W)
			gemm(false, false, (n1-n0)*x.H*x.W, c.In, c.K*c.K*c.Out, 1, dcol, c.K*c.K*c.Out, c.flip, c.In, 0, dx.Data[n0*x.H*x.W*c.In:], c.In)
		default:
			gemm(false, true, rows, kdim, c.Out, 1, dyc, c.Out, c.W.Value, c.Out, 0, col, kdim)
			c.col2im(col, dx, n0, n1, oh, ow)
		}
	})
}

// gemmFunc is blas.Gemm or blas.GemmSerial.
type gemmFunc func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// convWork is one worker's scratch space: unfolded patches and its share
// of the weight gradient.
type convWork struct {
	col, dcol, dxq, dW []float32
	ran                bool // the worker computed at least one chunk
}

// chunks runs fn over the images [0, n) in chunks small enough for the
// im2col budget. Large batches are shared between workers that each take
// whole chunks, in turn from a counter, and compute them with a serial
// matrix product: one synchronisation per layer instead of several per
// chunk, and a worker slowed down by other load on the machine simply
// takes fewer chunks instead of holding the other one up. Small batches (single-image inference) go chunk by chunk
// with the product itself parallel. first tells fn that a chunk is its
// worker's first; workers that ran at least one chunk have ran set.
func (c *Conv2D) chunks(n, oh, ow int, fn func(ws *convWork, gemm gemmFunc, n0, n1 int, first bool)) {
	c.chunksOf(n, c.chunk(oh, ow), fn)
}

// chunksOf is chunks with the chunk size given.
func (c *Conv2D) chunksOf(n, step int, fn func(ws *convWork, gemm gemmFunc, n0, n1 int, first bool)) {
	procs := parallel.Workers()
	for len(c.work) < procs {
		c.work = append(c.work, convWork{})
	}
	for i := range c.work {
		if len(c.work[i].dW) != len(c.W.Value) {
			c.work[i].dW = make([]float32, len(c.W.Value))
		}
	}
	for i := range c.work {
		c.work[i].ran = false
	}
	if n < 2*procs {
		for n0 := 0; n0 < n; n0 += step {
			fn(&c.work[0], blas.Gemm, n0, min(n0+step, n), n0 == 0)
		}
		c.work[0].ran = n > 0
		return
	}
	// At least four chunks per worker, so that the last ones to finish
	// leave little idle time.
	step = min(step, (n+4*procs-1)/(4*procs))
	var next atomic.Int64
	parallel.ForWorker(procs, 1, func(w, _, _ int) {
		ws := &c.work[w]
		for {
			n0 := int(next.Add(int64(step))) - step
			if n0 >= n {
				return
			}
			fn(ws, blas.GemmSerial, n0, min(n0+step, n), !ws.ran)
			ws.ran = true
		}
	})
}

// im2col unfolds images [n0, n1) of x into dst: one row of k·k·C patch
// values per output pixel (kernel row, kernel column, channel), with zeros
// where the kernel overhangs the border. It returns the filled part of dst,
// growing it if needed.
func im2col(dst *[]float32, x *Tensor, n0, n1, k, stride, pad, oh, ow int) []float32 {
	ci := x.C
	kdim := k * k * ci
	rows := (n1 - n0) * oh * ow
	if cap(*dst) < rows*kdim {
		*dst = make([]float32, rows*kdim)
	}
	col := (*dst)[:rows*kdim]
	if ci == 1 && k == 3 && stride == 1 && pad == 1 && oh == x.H && ow == x.W {
		im2col3x3Single(col, x, n0, n1)
	} else {
		im2colGeneral(col, x, n0, n1, k, stride, pad, oh, ow)
	}
	return col
}

// im2colGeneral is im2col into col, which has the right length.
func im2colGeneral(col []float32, x *Tensor, n0, n1, k, stride, pad, oh, ow int) {
	ci := x.C
	kdim := k * k * ci
	for n := n0; n < n1; n++ {
		img := x.Data[n*x.H*x.W*ci : (n+1)*x.H*x.W*ci]
		out := col[(n-n0)*oh*ow*kdim:]
		for oy := 0; oy < oh; oy++ {
			for ox := 0; ox < ow; ox++ {
				row := out[(oy*ow+ox)*kdim : (oy*ow+ox+1)*kdim]
				iy0, ix0 := oy*stride-pad, ox*stride-pad
				for ky := 0; ky < k; ky++ {
					iy := iy0 + ky
					seg := row[ky*k*ci : (ky+1)*k*ci]
					if iy < 0 || iy >= x.H {
						clear(seg)
						continue
					}
					if ix0 >= 0 && ix0+k <= x.W {
						copy(seg, img[(iy*x.W+ix0)*ci:(iy*x.W+ix0+k)*ci])
						continue
					}
					for kx := 0; kx < k; kx++ {
						ix := ix0 + kx
						if ix < 0 || ix >= x.W {
							clear(seg[kx*ci : (kx+1)*ci])
						} else {
							copy(seg[kx*ci:(kx+1)*ci], img[(iy*x.W+ix)*ci:(iy*x.W+ix+1)*ci])
						}
					}
				}
			}
		}
	}
}

// im2col3x3Single is im2col for the first layer's shape, a 3×3 same
// convolution of one channel, where the general version's copies are of
// three floats each and cost more in call overhead than in data moved: it
// builds each patch row from nine loads of a zero-padded image row triple.
func im2col3x3Single(col []float32, x *Tensor, n0, n1 int) {
	h, w := x.H, x.W
	// Three padded rows (w+2 values each) around the current output row.
	pad := make([]float32, 3*(w+2))
	for n := n0; n < n1; n++ {
		img := x.Data[n*h*w : (n+1)*h*w]
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

// col2im adds the patch gradients in col back onto the input pixels they
// came from: the adjoint of im2col.
func (c *Conv2D) col2im(col []float32, dx *Tensor, n0, n1, oh, ow int) {
	kdim := c.K * c.K * c.In
	ci := c.In
	for n := n0; n < n1; n++ {
		img := dx.Data[n*dx.H*dx.W*ci : (n+1)*dx.H*dx.W*ci]
		src := col[(n-n0)*oh*ow*kdim:]
		for oy := 0; oy < oh; oy++ {
			for ox := 0; ox < ow; ox++ {
				row := src[(oy*ow+ox)*kdim : (oy*ow+ox+1)*kdim]
				iy0, ix0 := oy*c.Stride-c.Pad, ox*c.Stride-c.Pad
				for ky := 0; ky < c.K; ky++ {
					iy := iy0 + ky
					if iy < 0 || iy >= dx.H {
						continue
					}
					for kx := 0; kx < c.K; kx++ {
						ix := ix0 + kx
						if ix < 0 || ix >= dx.W {
							continue
						}
						d := img[(iy*dx.W+ix)*ci : (iy*dx.W+ix+1)*ci]
						s := row[(ky*c.K+kx)*ci : (ky*c.K+kx+1)*ci]
						for i := range d {
							d[i] += s[i]
						}
					}
				}
			}
		}
	}
}

// addBias adds b to every row of data (rows of len(b) values).
func addBias(data, b []float32) {
	for off := 0; off < len(data); off += len(b) {
		row := data[off : off+len(b)]
		for i := range row {
			row[i] += b[i]
		}
	}
}

// axpy adds src to dst element-wise.
func axpy(dst, src []float32) {
	blas.Axpy(1, src, dst)
}

// sumRows sets dst to the column sums of data viewed as rows of width
// values.
func sumRows(dst, data []float32, width int) {
	clear(dst)
	for off := 0; off < len(data); off += width {
		row := data[off : off+width]
		for i := range dst {
			dst[i] += row[i]
		}
	}
}
