package nn

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fashion-classifier/fashion/internal/kernels"
)

// DepthwiseConv convolves each channel with its own K×K kernel (a grouped
// convolution with groups = channels), MobileNet's cheap spatial filter.
// Its weight is stored as [K·K, C]. It has no bias: batch norm follows it.
type DepthwiseConv struct {
	C, K, Stride, Pad int
	W                 *Param
	x                 *Tensor
	out, dx           *Tensor
	scratch           kernels.Scratch
}

// NewDepthwiseConv returns a depthwise convolution with He-normal weights
// (fan-in K·K).
func NewDepthwiseConv(rng *rand.Rand, c, k, stride, pad int) *DepthwiseConv {
	d := &DepthwiseConv{C: c, K: k, Stride: stride, Pad: pad, W: newParam("weight", Weight, k*k, c)}
	std := math.Sqrt(2 / float64(k*k))
	for i := range d.W.Value {
		d.W.Value[i] = float32(rng.NormFloat64() * std)
	}
	return d
}

// Params returns the weight.
func (d *DepthwiseConv) Params() []*Param { return []*Param{d.W} }

// shape is the kernel's view of the convolution of h×w images.
func (d *DepthwiseConv) shape(h, w int) kernels.ConvShape {
	s := kernels.SquareConv(d.C, h, w, d.C, d.K, d.Stride, d.Pad)
	s.Groups = d.C
	return s
}

// Forward convolves each channel of x separately.
func (d *DepthwiseConv) Forward(x *Tensor, train bool) *Tensor {
	if x.C != d.C {
		panic(fmt.Sprintf("nn: DepthwiseConv over %d channels got %v", d.C, x))
	}
	d.x = x
	s := d.shape(x.H, x.W)
	out := reuse(&d.out, x.N, s.OH, s.OW, d.C)
	kernels.DepthwiseForward(out.Data, x.Data, x.N, s, d.W.Value)
	return out
}

// Backward computes the weight and input gradients.
func (d *DepthwiseConv) Backward(dy *Tensor) *Tensor {
	x := d.x
	dx := reuse(&d.dx, x.N, x.H, x.W, x.C)
	kernels.DepthwiseBackward(dx.Data, d.W.Grad, x.Data, dy.Data, x.N, d.shape(x.H, x.W), d.W.Value, &d.scratch)
	return dx
}

// SqueezeExcite rescales each channel by a gate computed from the whole
// feature map (Hu et al. 2018), as in MobileNetV3: gate =
// hard-sigmoid(fc2(relu(fc1(mean over H,W)))), y = x·gate.
type SqueezeExcite struct {
	gate    *Sequential // pool, fc1, relu, fc2, hard-sigmoid
	x, g    *Tensor
	out, dx *Tensor
	dg      *Tensor
}

// NewSqueezeExcite returns a squeeze-and-excitation block over c channels
// with a bottleneck of squeeze channels.
func NewSqueezeExcite(rng *rand.Rand, c, squeeze int) *SqueezeExcite {
	s := &SqueezeExcite{gate: &Sequential{}}
	s.gate.Add("pool", &GlobalAvgPool{})
	s.gate.Add("fc1", NewLinear(rng, c, squeeze))
	s.gate.Add("relu", NewActivation(ReLU))
	s.gate.Add("fc2", NewLinear(rng, squeeze, c))
	s.gate.Add("gate", NewActivation(HardSigmoid))
	return s
}

// Params returns the two fully connected layers' parameters.
func (s *SqueezeExcite) Params() []*Param { return s.gate.Params() }

// Gate returns the layers that compute the per-channel gate from the
// block's input (pool, fc1, relu, fc2, hard-sigmoid), for inference
// compilers; they share the block's parameters.
func (s *SqueezeExcite) Gate() *Sequential { return s.gate }

// Forward multiplies x by its per-channel gate.
func (s *SqueezeExcite) Forward(x *Tensor, train bool) *Tensor {
	s.x = x
	s.g = s.gate.Forward(x, train)
	out := reuse(&s.out, x.N, x.H, x.W, x.C)
	kernels.ScaleChannels(out.Data, x.Data, s.g.Data, x.N, x.H*x.W, x.C)
	return out
}

// Backward adds the direct path (dy·gate) and the path through the gate.
func (s *SqueezeExcite) Backward(dy *Tensor) *Tensor {
	x := s.x
	hw, c := x.H*x.W, x.C
	dg := reuse(&s.dg, x.N, 1, 1, c)
	dx := reuse(&s.dx, x.N, x.H, x.W, c)
	kernels.ScaleChannelsBackward(dx.Data, dg.Data, dy.Data, x.Data, s.g.Data, x.N, hw, c)
	through := s.gate.Backward(dg)
	kernels.Add(dx.Data, dx.Data, through.Data)
	return dx
}

// Residual adds its input to its body's output: y = x + body(x).
type Residual struct {
	Body    *Sequential
	out, dx *Tensor
}

// NewResidual wraps body, which must keep the input's shape.
func NewResidual(body *Sequential) *Residual { return &Residual{Body: body} }

// Params returns the body's parameters, prefixed "body.".
func (r *Residual) Params() []*Param {
	ps := r.Body.Params()
	for _, p := range ps {
		p.Name = "body." + p.Name
	}
	return ps
}

// Forward returns x + body(x).
func (r *Residual) Forward(x *Tensor, train bool) *Tensor {
	y := r.Body.Forward(x, train)
	if y.Shape() != x.Shape() {
		panic(fmt.Sprintf("nn: residual body maps %v to %v", x, y))
	}
	out := reuse(&r.out, x.N, x.H, x.W, x.C)
	kernels.Add(out.Data, x.Data, y.Data)
	return out
}

// Backward returns dy + body'(dy).
func (r *Residual) Backward(dy *Tensor) *Tensor {
	db := r.Body.Backward(dy)
	dx := reuse(&r.dx, dy.N, dy.H, dy.W, dy.C)
	kernels.Add(dx.Data, dy.Data, db.Data)
	return dx
}
