package nn

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fashion-classifier/fashion/internal/kernels"
)

// Conv2D is a 2-D convolution with square kernels, computed by
// kernels.Conv (im2col and a matrix product per chunk of images, or, for
// stride-1 same convolutions where it is cheaper, products that read the
// patches in place from zero-padded images); 3×3 same convolutions with 8
// or more channels compute the output and the input gradient with
// Winograd's algorithm instead (see winograd), and a first layer's
// forward pass with kernels.Conv3x3Direct. Its weight is stored as
// [K·K·In, Out] (kernel row, kernel column, input channel; output
// channel), which is the right-hand matrix of those products.
type Conv2D struct {
	In, Out, K, Stride, Pad int
	// NoInputGrad skips the input gradient, for the first layer of a
	// network where nobody needs it.
	NoInputGrad bool
	// ReLU applies max(·, 0) to the output, in the same pass as the bias.
	ReLU bool

	W, B *Param // B is nil when the layer has no bias

	x, out, dx *Tensor
	dmask      *Tensor
	scratch    kernels.Scratch
	// fwd and bwd are the Winograd forms of the weights and of the
	// flipped weights (the input gradient's convolution), re-transformed
	// every step (see winograd); flipped holds the flipped weights.
	fwd, bwd *kernels.Winograd3x3
	flipped  []float32
	ep       *kernels.Epilogue // see epilogue
	path     kernels.ConvPath  // forces a method, for tests and benchmarks
	maxChunk int               // if > 0, caps the images per chunk, for tests
}

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

// shape is the kernel's view of the convolution of h×w images.
func (c *Conv2D) shape(h, w int) kernels.Conv {
	return kernels.Conv{ConvShape: kernels.SquareConv(c.In, h, w, c.Out, c.K, c.Stride, c.Pad), Path: c.path, MaxChunk: c.maxChunk}
}

// Forward convolves x, which must have c.In channels.
func (c *Conv2D) Forward(x *Tensor, train bool) *Tensor {
	if x.C != c.In {
		panic(fmt.Sprintf("nn: Conv2D with %d input channels got %v", c.In, x))
	}
	c.x = x
	k := c.shape(x.H, x.W)
	out := reuse(&c.out, x.N, k.OH, k.OW, c.Out)
	switch {
	case c.winograd(k):
		c.fwd = updateWinograd(c.fwd, c.W.Value, c.In, c.Out, x.N, x.H, x.W)
		c.fwd.Forward(out.Data, x.Data, x.N, x.H, x.W, c.epilogue(), &c.scratch)
	case c.direct(k):
		kernels.Conv3x3Direct(out.Data, x.Data, x.N, x.H, x.W, c.In, c.Out, c.W.Value, c.epilogue(), &c.scratch)
	default:
		k.Forward(out.Data, x.Data, x.N, c.W.Value, c.epilogue(), &c.scratch)
	}
	return out
}

// winograd reports whether the convolution and its input gradient go
// through Winograd's F(4×4, 3×3) or F(2×2, 3×3) (kernels.Winograd3x3):
// 3×3 stride-1 padding-1 with at least 8 channels in and out, the shapes
// inference also computes that way. It does 4 (2.25) times fewer
// multiply-adds than the direct convolution, for a rounding error ~1e-5
// of Σ|w·x| instead of ~1e-6; so is the weight gradient on large
// feature maps (kernels.Winograd3x3WeightGrad). A path forced for tests or
// benchmarks turns it off.
func (c *Conv2D) winograd(k kernels.Conv) bool {
	return c.path == kernels.ConvAuto && k.KH == 3 && k.Same() && c.In >= 8 && c.Out >= 8
}

// winogradGradMinPixels is the smallest feature map (h·w) whose weight
// gradient Winograd computes. On 7×7 maps F(4×4)'s 2×2 tiles overhang by
// a third and its 36 accumulated C×M products (1.2 MB for 64→128) spill
// from L2: kernels' BenchmarkWinograd3x3WeightGrad measured it 1.3–1.9×
// slower than the direct gradient there, and 1.2–2× faster on 28×28 and
// 14×14 (Zen 3, loaded machine).
const winogradGradMinPixels = 100

// direct reports whether the forward pass goes through
// kernels.Conv3x3Direct: a 3×3 same convolution with too few input
// channels for Winograd (a first layer), where it runs about 2.5× as fast
// as im2col and a product of K = 9·C.
func (c *Conv2D) direct(k kernels.Conv) bool {
	return c.path == kernels.ConvAuto && k.KH == 3 && k.Same() && c.In < 8 && kernels.DirectSupported(c.Out)
}

// updateWinograd returns wg (made on first use) holding the Winograd
// transform of the [3·3·in, out] weights wt for n images of h×w.
func updateWinograd(wg *kernels.Winograd3x3, wt []float32, in, out, n, h, w int) *kernels.Winograd3x3 {
	if wg == nil {
		return kernels.NewWinograd3x3(wt, in, out)
	}
	wg.Update(wt, n, h, w)
	return wg
}

// epilogue returns the bias and ReLU as the kernels apply them, made once:
// it refers to the bias's storage, which the optimiser updates in place.
func (c *Conv2D) epilogue() *kernels.Epilogue {
	var bias []float32
	if c.B != nil {
		bias = c.B.Value
	}
	var act kernels.Act
	if c.ReLU {
		act = kernels.ReLU
	}
	if e := c.ep; e == nil || e.Act != act || len(e.Bias) != len(bias) || (bias != nil && &e.Bias[0] != &bias[0]) {
		c.ep = kernels.NewEpilogue(bias, act)
	}
	return c.ep
}

// Backward computes the weight (and bias) gradients and, unless
// NoInputGrad is set, the input gradient.
func (c *Conv2D) Backward(dy *Tensor) *Tensor {
	x := c.x
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
	var dxData []float32
	if !c.NoInputGrad {
		dx = reuse(&c.dx, x.N, x.H, x.W, x.C)
		dxData = dx.Data
	}
	k := c.shape(x.H, x.W)
	if !c.winograd(k) {
		k.Backward(dxData, c.W.Grad, x.Data, dy.Data, x.N, c.W.Value, &c.scratch)
		return dx
	}
	// The weight gradient from the transformed input and output-gradient
	// tiles on large feature maps, directly on small ones (see
	// winogradGradMinPixels); the input gradient as the Winograd
	// convolution of dy by the flipped kernel.
	if x.H*x.W >= winogradGradMinPixels {
		kernels.Winograd3x3WeightGrad(c.W.Grad, x.Data, dy.Data, x.N, x.H, x.W, c.In, c.Out, &c.scratch)
	} else {
		k.Backward(nil, c.W.Grad, x.Data, dy.Data, x.N, c.W.Value, &c.scratch)
	}
	if dx == nil {
		return nil
	}
	flipped := kernels.Grow(&c.flipped, len(c.W.Value))
	kernels.FlipWeights(flipped, c.W.Value, k.ConvShape)
	c.bwd = updateWinograd(c.bwd, flipped, c.Out, c.In, x.N, x.H, x.W)
	c.bwd.Forward(dx.Data, dy.Data, x.N, x.H, x.W, nil, &c.scratch)
	return dx
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
