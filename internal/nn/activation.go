package nn

import "github.com/fashion-classifier/fashion/internal/kernels"

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

// act is the kernel's description of the function.
func (a *Activation) act() kernels.Act {
	switch a.Kind {
	case HardSigmoid:
		return kernels.HardSigmoid
	case HardSwish:
		return kernels.HardSwish
	}
	return kernels.ReLU
}

// Forward applies the function element-wise.
func (a *Activation) Forward(x *Tensor, train bool) *Tensor {
	a.x = x
	out := reuse(&a.out, x.N, x.H, x.W, x.C)
	kernels.ApplyActParallel(out.Data, x.Data, a.act())
	return out
}

// Backward multiplies dy by the derivative at the forward input.
func (a *Activation) Backward(dy *Tensor) *Tensor {
	dx := reuse(&a.dx, dy.N, dy.H, dy.W, dy.C)
	kernels.ActBackward(dx.Data, dy.Data, a.x.Data, a.act())
	return dx
}
