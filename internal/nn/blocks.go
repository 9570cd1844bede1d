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
	kernels.AddParallel(dx.Data, dx.Data, through.Data, false)
	return dx
}

// Residual adds its input, or its Shortcut's output, to its body's output:
// y = x + body(x), or y = shortcut(x) + body(x) when Shortcut is set (a
// ResNet block that changes the shape, with a 1×1 strided convolution on
// the shortcut).
type Residual struct {
	Body     *Sequential
	Shortcut *Sequential // nil: the identity
	out, dx  *Tensor
}

// NewResidual wraps body, which must keep the input's shape.
func NewResidual(body *Sequential) *Residual { return &Residual{Body: body} }

// NewProjection returns a residual block whose shortcut is a layer chain of
// its own: body and shortcut must map the input to the same shape.
func NewProjection(body, shortcut *Sequential) *Residual {
	return &Residual{Body: body, Shortcut: shortcut}
}

// Params returns the body's parameters, prefixed "body.", then the
// shortcut's, prefixed "shortcut.".
func (r *Residual) Params() []*Param {
	ps := r.Body.Params()
	for _, p := range ps {
		p.Name = "body." + p.Name
	}
	if r.Shortcut != nil {
		for _, p := range r.Shortcut.Params() {
			p.Name = "shortcut." + p.Name
			ps = append(ps, p)
		}
	}
	return ps
}

// Forward returns shortcut(x) + body(x).
func (r *Residual) Forward(x *Tensor, train bool) *Tensor {
	y := r.Body.Forward(x, train)
	s := x
	if r.Shortcut != nil {
		s = r.Shortcut.Forward(x, train)
	}
	if y.Shape() != s.Shape() {
		panic(fmt.Sprintf("nn: residual body maps %v to %v, its shortcut to %v", x, y, s))
	}
	out := reuse(&r.out, s.N, s.H, s.W, s.C)
	kernels.AddParallel(out.Data, s.Data, y.Data, false)
	return out
}

// Backward returns shortcut'(dy) + body'(dy).
func (r *Residual) Backward(dy *Tensor) *Tensor {
	db := r.Body.Backward(dy)
	ds := dy
	if r.Shortcut != nil {
		ds = r.Shortcut.Backward(dy)
	}
	dx := reuse(&r.dx, db.N, db.H, db.W, db.C)
	kernels.AddParallel(dx.Data, ds.Data, db.Data, false)
	return dx
}
