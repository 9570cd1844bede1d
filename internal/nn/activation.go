package nn

import "github.com/fashion-classifier/fashion/internal/parallel"

// ActKind names an element-wise non-linearity.
type ActKind int

// The supported non-linearities.
const (
	ReLU        ActKind = iota // max(x, 0)
	HardSigmoid                // relu6(x+3)/6, MobileNetV3's cheap sigmoid
	HardSwish                  // x·relu6(x+3)/6, MobileNetV3's cheap swish
)

// Activation applies a non-linearity element-wise.
type Activation struct {
	Kind    ActKind
	x       *Tensor
	out, dx *Tensor
}

// NewActivation returns the non-linearity of the given kind.
func NewActivation(k ActKind) *Activation { return &Activation{Kind: k} }

// Params returns nil: activations have no parameters.
func (a *Activation) Params() []*Param { return nil }

// Forward applies the function element-wise.
func (a *Activation) Forward(x *Tensor, train bool) *Tensor {
	a.x = x
	out := reuse(&a.out, x.N, x.H, x.W, x.C)
	kind := a.Kind
	parallel.For(len(x.Data), 1<<16, func(lo, hi int) {
		src, dst := x.Data[lo:hi], out.Data[lo:hi]
		switch kind {
		case ReLU:
			for i, v := range src {
				dst[i] = max(v, 0)
			}
		case HardSigmoid:
			for i, v := range src {
				dst[i] = min(max(v+3, 0), 6) / 6
			}
		case HardSwish:
			for i, v := range src {
				dst[i] = v * min(max(v+3, 0), 6) / 6
			}
		}
	})
	return out
}

// Backward multiplies dy by the derivative at the forward input.
func (a *Activation) Backward(dy *Tensor) *Tensor {
	dx := reuse(&a.dx, dy.N, dy.H, dy.W, dy.C)
	kind, x := a.Kind, a.x.Data
	parallel.For(len(dy.Data), 1<<16, func(lo, hi int) {
		d, xs, o := dy.Data[lo:hi], x[lo:hi], dx.Data[lo:hi]
		switch kind {
		case ReLU:
			for i, v := range xs {
				if v > 0 {
					o[i] = d[i]
				} else {
					o[i] = 0
				}
			}
		case HardSigmoid:
			for i, v := range xs {
				if v > -3 && v < 3 {
					o[i] = d[i] / 6
				} else {
					o[i] = 0
				}
			}
		case HardSwish:
			for i, v := range xs {
				switch {
				case v <= -3:
					o[i] = 0
				case v >= 3:
					o[i] = d[i]
				default:
					o[i] = d[i] * (2*v + 3) / 6
				}
			}
		}
	})
	return dx
}
