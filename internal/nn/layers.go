package nn

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fashion-classifier/fashion/internal/blas"
	"github.com/fashion-classifier/fashion/internal/kernels"
)

// MaxPool takes the maximum over K×K windows moved by Stride, without
// padding.
type MaxPool struct {
	K, Stride int
	x         *Tensor
	arg       []int32 // index into x.Data of each output's maximum
	out, dx   *Tensor
}

// NewMaxPool returns a k×k max pool with the given stride.
func NewMaxPool(k, stride int) *MaxPool { return &MaxPool{K: k, Stride: stride} }

// Params returns nil.
func (p *MaxPool) Params() []*Param { return nil }

// shape is the kernel's view of the pool over h×w images of c channels.
func (p *MaxPool) shape(c, h, w int) kernels.PoolShape {
	return kernels.SquarePool(c, h, w, p.K, p.Stride)
}

// Forward pools x and, in training, remembers where each maximum came
// from.
func (p *MaxPool) Forward(x *Tensor, train bool) *Tensor {
	p.x = x
	s := p.shape(x.C, x.H, x.W)
	out := reuse(&p.out, x.N, s.OH, s.OW, x.C)
	var arg []int32
	if train {
		if cap(p.arg) < len(out.Data) {
			p.arg = make([]int32, len(out.Data))
		}
		p.arg = p.arg[:len(out.Data)]
		arg = p.arg
	}
	kernels.MaxPool(out.Data, arg, x.Data, x.N, s)
	return out
}

// Backward routes each output gradient to the input that was the maximum.
func (p *MaxPool) Backward(dy *Tensor) *Tensor {
	x := p.x
	dx := reuse(&p.dx, x.N, x.H, x.W, x.C)
	kernels.MaxPoolBackward(dx.Data, dy.Data, p.arg, x.N, x.H*x.W*x.C, dy.H*dy.W*dy.C, p.shape(x.C, x.H, x.W).Overlapping())
	return dx
}

// GlobalAvgPool averages each channel over all positions: [N,H,W,C] →
// [N,1,1,C].
type GlobalAvgPool struct {
	x       *Tensor
	out, dx *Tensor
}

// Params returns nil.
func (g *GlobalAvgPool) Params() []*Param { return nil }

// Forward averages over H and W.
func (g *GlobalAvgPool) Forward(x *Tensor, train bool) *Tensor {
	g.x = x
	out := reuse(&g.out, x.N, 1, 1, x.C)
	kernels.GlobalAvgPool(out.Data, x.Data, x.N, x.H*x.W, x.C)
	return out
}

// Backward spreads each gradient evenly over the positions it averaged.
func (g *GlobalAvgPool) Backward(dy *Tensor) *Tensor {
	x := g.x
	dx := reuse(&g.dx, x.N, x.H, x.W, x.C)
	kernels.GlobalAvgPoolBackward(dx.Data, dy.Data, x.N, x.H*x.W, x.C)
	return dx
}

// Flatten reshapes [N,H,W,C] to [N,1,1,H·W·C] without copying.
type Flatten struct {
	h, w, c int
	out, dx Tensor
}

// Params returns nil.
func (f *Flatten) Params() []*Param { return nil }

// Forward returns a view of x with one feature axis.
func (f *Flatten) Forward(x *Tensor, train bool) *Tensor {
	f.h, f.w, f.c = x.H, x.W, x.C
	f.out = Tensor{N: x.N, H: 1, W: 1, C: x.H * x.W * x.C, Data: x.Data}
	return &f.out
}

// Backward returns a view of dy with the forward input's shape.
func (f *Flatten) Backward(dy *Tensor) *Tensor {
	f.dx = Tensor{N: dy.N, H: f.h, W: f.w, C: f.c, Data: dy.Data}
	return &f.dx
}

// Dropout zeroes each value with probability P in training and scales the
// rest by 1/(1−P), so inference needs no rescaling.
type Dropout struct {
	P       float32
	rng     *rand.Rand
	mask    []float32
	out, dx *Tensor
}

// NewDropout returns a dropout layer drawing its masks from rng.
func NewDropout(rng *rand.Rand, p float32) *Dropout { return &Dropout{P: p, rng: rng} }

// Params returns nil.
func (d *Dropout) Params() []*Param { return nil }

// Forward drops values in training and is the identity otherwise.
func (d *Dropout) Forward(x *Tensor, train bool) *Tensor {
	if !train || d.P == 0 {
		d.mask = d.mask[:0]
		return x
	}
	out := reuse(&d.out, x.N, x.H, x.W, x.C)
	if cap(d.mask) < len(x.Data) {
		d.mask = make([]float32, len(x.Data))
	}
	d.mask = d.mask[:len(x.Data)]
	dropoutMask(d.mask, d.rng, d.P)
	for i, v := range x.Data {
		out.Data[i] = v * d.mask[i]
	}
	return out
}

// dropoutMask fills mask with 0 (probability p) or 1/(1−p). Each 64-bit
// random number decides four values by 16-bit lanes: a quarter of the
// generator calls of one Float32 per value, which made the mask the
// slowest part of the layer; p is rounded to a multiple of 2⁻¹⁶.
func dropoutMask(mask []float32, rng *rand.Rand, p float32) {
	scaleBits := math.Float32bits(1 / (1 - p))
	threshold := uint64(math.Round(float64(p) * (1 << 16)))
	keep := func(lane uint64) float32 {
		// Branch-free (the outcome is random, so a branch mispredicts
		// often): the subtraction wraps, setting the top bit, exactly when
		// the lane is below the threshold.
		drop := uint32((lane&0xffff - threshold) >> 63)
		return math.Float32frombits(scaleBits & (drop - 1))
	}
	i := 0
	for ; i+4 <= len(mask); i += 4 {
		u := rng.Uint64()
		m := (*[4]float32)(mask[i:])
		m[0], m[1], m[2], m[3] = keep(u), keep(u>>16), keep(u>>32), keep(u>>48)
	}
	for u := rng.Uint64(); i < len(mask); i, u = i+1, u>>16 {
		mask[i] = keep(u)
	}
}

// Backward applies the same mask to the gradient.
func (d *Dropout) Backward(dy *Tensor) *Tensor {
	if len(d.mask) == 0 {
		return dy
	}
	dx := reuse(&d.dx, dy.N, dy.H, dy.W, dy.C)
	for i, g := range dy.Data {
		dx.Data[i] = g * d.mask[i]
	}
	return dx
}

// Linear is a fully connected layer y = x·W + b over the feature axis. Its
// weight is stored as [In, Out].
type Linear struct {
	In, Out int
	W, B    *Param
	x       *Tensor
	out, dx *Tensor
}

// NewLinear returns a fully connected layer initialised like PyTorch's
// (uniform in ±1/√In), which suits layers followed by ReLU or a loss.
func NewLinear(rng *rand.Rand, in, out int) *Linear {
	l := &Linear{In: in, Out: out, W: newParam("weight", Weight, in, out), B: newParam("bias", NoDecay, out)}
	bound := 1 / math.Sqrt(float64(in))
	for i := range l.W.Value {
		l.W.Value[i] = float32((rng.Float64()*2 - 1) * bound)
	}
	for i := range l.B.Value {
		l.B.Value[i] = float32((rng.Float64()*2 - 1) * bound)
	}
	return l
}

// Params returns the weight and bias.
func (l *Linear) Params() []*Param { return []*Param{l.W, l.B} }

// Forward computes x·W + b; x must have H = W = 1 and In channels.
func (l *Linear) Forward(x *Tensor, train bool) *Tensor {
	if x.H*x.W*x.C != l.In {
		panic(fmt.Sprintf("nn: Linear with %d inputs got %v", l.In, x))
	}
	l.x = x
	out := reuse(&l.out, x.N, 1, 1, l.Out)
	blas.Gemm(false, false, x.N, l.Out, l.In, 1, x.Data, l.In, l.W.Value, l.Out, 0, out.Data, l.Out)
	addBias(out.Data, l.B.Value)
	return out
}

// Backward computes dW = xᵀ·dy, db = Σ dy and dx = dy·Wᵀ.
func (l *Linear) Backward(dy *Tensor) *Tensor {
	x := l.x
	blas.Gemm(true, false, l.In, l.Out, x.N, 1, x.Data, l.In, dy.Data, l.Out, 0, l.W.Grad, l.Out)
	sumRows(l.B.Grad, dy.Data, l.Out)
	dx := reuse(&l.dx, x.N, x.H, x.W, x.C)
	blas.Gemm(false, true, x.N, l.In, l.Out, 1, dy.Data, l.Out, l.W.Value, l.Out, 0, dx.Data, l.In)
	return dx
}
