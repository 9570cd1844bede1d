package nn

import (
	"fmt"
	"math"

	"github.com/fashion-classifier/fashion/internal/kernels"
)

// BatchNorm normalises each channel over the batch and spatial positions
// (Ioffe & Szegedy 2015). In training it uses the batch's statistics and
// updates running averages; in inference it uses the running averages.
type BatchNorm struct {
	C        int
	Eps      float32
	Momentum float32 // weight of the new batch in the running averages
	// ReLU applies max(·, 0) to the output. Fusing the activation saves a
	// pass over the largest tensors of a VGG-style network, and its
	// derivative is read from the output, so no input needs keeping.
	ReLU bool

	Gamma, Beta     *Param
	RunMean, RunVar *Param

	x, out, dx *Tensor
	// scale and shift are the forward pass's affine map; with a fused
	// ReLU, Backward recomputes the mask from them and x.
	scale, shift []float32
	mean32       []float32
	invStd       []float32
	mean, sum    []float64
}

// NewBatchNorm returns a batch norm over c channels with PyTorch's defaults
// (eps 1e-5, momentum 0.1), scale 1 and shift 0.
func NewBatchNorm(c int) *BatchNorm {
	b := &BatchNorm{C: c, Eps: 1e-5, Momentum: 0.1,
		Gamma:   newParam("weight", NoDecay, c),
		Beta:    newParam("bias", NoDecay, c),
		RunMean: newParam("running_mean", Buffer, c),
		RunVar:  newParam("running_var", Buffer, c),
		invStd:  make([]float32, c),
		mean:    make([]float64, c),
		sum:     make([]float64, c),
	}
	for i := range c {
		b.Gamma.Value[i] = 1
		b.RunVar.Value[i] = 1
	}
	return b
}

// Params returns scale, shift and the running statistics.
func (b *BatchNorm) Params() []*Param {
	return []*Param{b.Gamma, b.Beta, b.RunMean, b.RunVar}
}

// Forward normalises x per channel.
func (b *BatchNorm) Forward(x *Tensor, train bool) *Tensor {
	if x.C != b.C {
		panic(fmt.Sprintf("nn: BatchNorm over %d channels got %v", b.C, x))
	}
	out := reuse(&b.out, x.N, x.H, x.W, x.C)
	c := b.C
	if !train {
		scale, shift := make([]float32, c), make([]float32, c)
		for i := range c {
			inv := float32(1 / math.Sqrt(float64(b.RunVar.Value[i]+b.Eps)))
			scale[i] = b.Gamma.Value[i] * inv
			shift[i] = b.Beta.Value[i] - b.RunMean.Value[i]*scale[i]
		}
		kernels.AffineParallel(out.Data, x.Data, c, scale, shift, b.ReLU)
		return out
	}
	rows := len(x.Data) / c
	// One pass of sums of x and x², in float32 over blocks of rows and
	// float64 across blocks: exact enough for E[x²] − mean² on 100k-row
	// batches, and one pass halves the memory traffic of two.
	kernels.ChannelMoments(b.mean, b.sum, x.Data, c)
	m := b.Momentum
	for i := range c {
		b.mean[i] /= float64(rows)
		v := max(b.sum[i]/float64(rows)-b.mean[i]*b.mean[i], 0)
		b.invStd[i] = float32(1 / math.Sqrt(v+float64(b.Eps)))
		unbiased := v * float64(rows) / float64(max(rows-1, 1))
		b.RunMean.Value[i] = (1-m)*b.RunMean.Value[i] + m*float32(b.mean[i])
		b.RunVar.Value[i] = (1-m)*b.RunVar.Value[i] + m*float32(unbiased)
	}
	// x̂ = (x − mean)·invStd is recomputed in Backward from x rather than
	// stored: two flops per value are cheaper than writing and re-reading
	// a tensor as large as the input.
	b.x = x
	b.mean32 = b.mean32[:0]
	for i := range c {
		b.mean32 = append(b.mean32, float32(b.mean[i]))
	}
	if len(b.scale) != c {
		b.scale, b.shift = make([]float32, c), make([]float32, c)
	}
	scale, shift := b.scale, b.shift
	for i := range c {
		scale[i] = b.invStd[i] * b.Gamma.Value[i]
		shift[i] = b.Beta.Value[i] - b.mean32[i]*scale[i]
	}
	kernels.AffineParallel(out.Data, x.Data, c, scale, shift, b.ReLU)
	return out
}

// Backward returns the input gradient of a training-mode Forward.
func (b *BatchNorm) Backward(dy *Tensor) *Tensor {
	c := b.C
	x, mean32, inv := b.x.Data, b.mean32, b.invStd
	rows := len(dy.Data) / c
	dg, db := b.Gamma.Grad, b.Beta.Grad
	// With a fused ReLU, the gradient reaching the normalisation is dy
	// where the output is positive and 0 elsewhere; the mask is recomputed
	// from x in both passes (x·scale + shift > 0), which reads less memory
	// than loading the stored output.
	var scale, shift []float32
	if b.ReLU {
		scale, shift = b.scale, b.shift
	}
	// Pass 1: Σ dy and Σ dy·x per channel (Σ dy·x̂ follows from them).
	sd, sdx := make([]float64, c), make([]float64, c)
	kernels.GradMoments(sd, sdx, dy.Data, x, c, scale, shift)
	// Pass 2: dx = γ·invStd·(dy − mean(dy) − x̂·mean(dy·x̂)), rewritten as
	// dx = A·dy + B·x + C with per-channel constants.
	ka, kb, kc := make([]float32, c), make([]float32, c), make([]float32, c)
	for i := range c {
		sumD := sd[i]
		sumDH := float64(inv[i]) * (sdx[i] - float64(mean32[i])*sumD)
		dg[i], db[i] = float32(sumDH), float32(sumD)
		k1 := float64(b.Gamma.Value[i] * inv[i])
		mD, mDH := sumD/float64(rows), sumDH/float64(rows)
		ka[i] = float32(k1)
		kb[i] = float32(-k1 * float64(inv[i]) * mDH)
		kc[i] = float32(k1 * (-mD + float64(mean32[i])*float64(inv[i])*mDH))
	}
	dx := reuse(&b.dx, dy.N, dy.H, dy.W, dy.C)
	kernels.GradApplyParallel(dx.Data, dy.Data, x, c, scale, shift, ka, kb, kc)
	return dx
}

// positive returns 1 for y > 0 and 0 otherwise (y is a ReLU output, so
// never negative zero), without a branch: ReLU masks are close to random,
// and mispredicted branches cost more than the arithmetic. A positive
// float's bit pattern is a positive int32, whose negation shifted right
// by 31 is all ones; zero stays zero.
func positive(y float32) float32 {
	m := uint32(-int32(math.Float32bits(y)) >> 31)
	return math.Float32frombits(0x3f800000 & m)
}
