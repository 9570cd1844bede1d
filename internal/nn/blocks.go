package nn

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fashion-classifier/fashion/internal/parallel"
)

// DepthwiseConv convolves each channel with its own K×K kernel (a grouped
// convolution with groups = channels), MobileNet's cheap spatial filter.
// Its weight is stored as [K·K, C]. It has no bias: batch norm follows it.
type DepthwiseConv struct {
	C, K, Stride, Pad int
	W                 *Param
	x                 *Tensor
	out, dx           *Tensor
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

// visit calls fn for every (output offset, input offset, weight offset)
// triple of the convolution of image n; offsets point at C contiguous
// values.
func (d *DepthwiseConv) visit(x *Tensor, n, oh, ow int, fn func(o, i, w int)) {
	c := d.C
	for oy := range oh {
		for ox := range ow {
			o := ((n*oh+oy)*ow + ox) * c
			for ky := range d.K {
				iy := oy*d.Stride - d.Pad + ky
				if iy < 0 || iy >= x.H {
					continue
				}
				for kx := range d.K {
					ix := ox*d.Stride - d.Pad + kx
					if ix < 0 || ix >= x.W {
						continue
					}
					fn(o, ((n*x.H+iy)*x.W+ix)*c, (ky*d.K+kx)*c)
				}
			}
		}
	}
}

// Forward convolves each channel of x separately.
func (d *DepthwiseConv) Forward(x *Tensor, train bool) *Tensor {
	if x.C != d.C {
		panic(fmt.Sprintf("nn: DepthwiseConv over %d channels got %v", d.C, x))
	}
	d.x = x
	oh, ow := (x.H+2*d.Pad-d.K)/d.Stride+1, (x.W+2*d.Pad-d.K)/d.Stride+1
	out := reuse(&d.out, x.N, oh, ow, d.C)
	clear(out.Data)
	c, w := d.C, d.W.Value
	parallel.For(x.N, 1, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			d.visit(x, n, oh, ow, func(o, i, k int) {
				dst, src, wk := out.Data[o:o+c], x.Data[i:i+c], w[k:k+c]
				for j := range dst {
					dst[j] += src[j] * wk[j]
				}
			})
		}
	})
	return out
}

// Backward computes the weight and input gradients.
func (d *DepthwiseConv) Backward(dy *Tensor) *Tensor {
	x := d.x
	dx := reuse(&d.dx, x.N, x.H, x.W, x.C)
	clear(dx.Data)
	c, w := d.C, d.W.Value
	// Each worker sums its images' weight gradients privately; the partial
	// sums are added at the end, so no two goroutines write the same memory.
	var partial [][]float32
	parts := make(chan []float32, 64)
	parallel.For(x.N, 1, func(lo, hi int) {
		gw := make([]float32, len(w))
		for n := lo; n < hi; n++ {
			d.visit(x, n, dy.H, dy.W, func(o, i, k int) {
				g, src, dst, wk, gk := dy.Data[o:o+c], x.Data[i:i+c], dx.Data[i:i+c], w[k:k+c], gw[k:k+c]
				for j := range g {
					dst[j] += g[j] * wk[j]
					gk[j] += g[j] * src[j]
				}
			})
		}
		parts <- gw
	})
	close(parts)
	for p := range parts {
		partial = append(partial, p)
	}
	clear(d.W.Grad)
	for _, p := range partial {
		for j, v := range p {
			d.W.Grad[j] += v
		}
	}
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

// Forward multiplies x by its per-channel gate.
func (s *SqueezeExcite) Forward(x *Tensor, train bool) *Tensor {
	s.x = x
	s.g = s.gate.Forward(x, train)
	out := reuse(&s.out, x.N, x.H, x.W, x.C)
	hw, c := x.H*x.W, x.C
	for n := range x.N {
		g := s.g.Data[n*c : (n+1)*c]
		for p := range hw {
			o := (n*hw + p) * c
			src, dst := x.Data[o:o+c], out.Data[o:o+c]
			for j := range dst {
				dst[j] = src[j] * g[j]
			}
		}
	}
	return out
}

// Backward adds the direct path (dy·gate) and the path through the gate.
func (s *SqueezeExcite) Backward(dy *Tensor) *Tensor {
	x := s.x
	hw, c := x.H*x.W, x.C
	dg := reuse(&s.dg, x.N, 1, 1, c)
	clear(dg.Data)
	dx := reuse(&s.dx, x.N, x.H, x.W, c)
	for n := range x.N {
		g, gd := s.g.Data[n*c:(n+1)*c], dg.Data[n*c:(n+1)*c]
		for p := range hw {
			o := (n*hw + p) * c
			d, src, dst := dy.Data[o:o+c], x.Data[o:o+c], dx.Data[o:o+c]
			for j := range d {
				dst[j] = d[j] * g[j]
				gd[j] += d[j] * src[j]
			}
		}
	}
	through := s.gate.Backward(dg)
	for i, v := range through.Data {
		dx.Data[i] += v
	}
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
	for i := range out.Data {
		out.Data[i] = x.Data[i] + y.Data[i]
	}
	return out
}

// Backward returns dy + body'(dy).
func (r *Residual) Backward(dy *Tensor) *Tensor {
	db := r.Body.Backward(dy)
	dx := reuse(&r.dx, dy.N, dy.H, dy.W, dy.C)
	for i := range dx.Data {
		dx.Data[i] = dy.Data[i] + db.Data[i]
	}
	return dx
}
