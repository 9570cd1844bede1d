package kernels

import (
	"fmt"
	"math"

	"github.com/fashion-classifier/fashion/internal/parallel"
)

// ActKind names an element-wise non-linearity.
type ActKind uint8

// The supported non-linearities.
const (
	ActNone        ActKind = iota // identity
	ActReLU                       // max(x, 0)
	ActClip                       // min(max(x, A), B)
	ActSigmoid                    // 1/(1+e^−x)
	ActHardSigmoid                // max(0, min(1, A·x+B)); A = 1/6, B = 1/2 is relu6(x+3)/6
	ActHardSwish                  // x·max(0, min(1, x/6+1/2))
	ActLeakyReLU                  // x for x ≥ 0, A·x otherwise
)

// Act is an element-wise function with its parameters (clip bounds, or
// alpha and beta).
type Act struct {
	Kind ActKind
	A, B float32
}

// Common activations.
var (
	ReLU        = Act{Kind: ActReLU}
	HardSigmoid = Act{Kind: ActHardSigmoid, A: 1.0 / 6, B: 0.5}
	HardSwish   = Act{Kind: ActHardSwish}
)

// String names the function and its parameters, such as "relu" or
// "clip(0,6)"; the identity is "none".
func (a Act) String() string {
	switch a.Kind {
	case ActNone:
		return "none"
	case ActReLU:
		return "relu"
	case ActClip:
		return fmt.Sprintf("clip(%g,%g)", a.A, a.B)
	case ActSigmoid:
		return "sigmoid"
	case ActHardSigmoid:
		return fmt.Sprintf("hardsigmoid(%g,%g)", a.A, a.B)
	case ActHardSwish:
		return "hardswish"
	case ActLeakyReLU:
		return fmt.Sprintf("leakyrelu(%g)", a.A)
	}
	return fmt.Sprintf("act%d", a.Kind)
}

// Eval applies the function to one value: the reference the slice kernels
// are tested against.
func (a Act) Eval(v float32) float32 {
	switch a.Kind {
	case ActReLU:
		return max(v, 0)
	case ActClip:
		return min(max(v, a.A), a.B)
	case ActSigmoid:
		return float32(1 / (1 + math.Exp(-float64(v))))
	case ActHardSigmoid:
		return max(0, min(1, a.A*v+a.B))
	case ActHardSwish:
		return v * max(0, min(1, v*(1.0/6)+0.5))
	case ActLeakyReLU:
		if v < 0 {
			return a.A * v
		}
	}
	return v
}

// Deriv is the derivative of the function at v (0 at the kinks).
func (a Act) Deriv(v float32) float32 {
	switch a.Kind {
	case ActReLU:
		if v > 0 {
			return 1
		}
		return 0
	case ActClip:
		if v > a.A && v < a.B {
			return 1
		}
		return 0
	case ActSigmoid:
		s := a.Eval(v)
		return s * (1 - s)
	case ActHardSigmoid:
		if y := a.A*v + a.B; y > 0 && y < 1 {
			return a.A
		}
		return 0
	case ActHardSwish:
		switch {
		case v <= -3:
			return 0
		case v >= 3:
			return 1
		}
		return (2*v + 3) / 6
	case ActLeakyReLU:
		if v < 0 {
			return a.A
		}
	}
	return 1
}

// ApplyAct sets dst[i] = a(src[i]) on the calling goroutine; dst and src
// may be the same slice.
func ApplyAct(dst, src []float32, a Act) {
	dst = dst[:len(src)]
	switch a.Kind {
	case ActNone:
		copy(dst, src)
	case ActReLU:
		for i, v := range src {
			dst[i] = max(v, 0)
		}
	case ActClip:
		lo, hi := a.A, a.B
		for i, v := range src {
			dst[i] = min(max(v, lo), hi)
		}
	case ActHardSwish:
		hardSwish(dst, src)
	default:
		for i, v := range src {
			dst[i] = a.Eval(v)
		}
	}
}

// actMinPer is the fewest values of an element-wise pass worth a
// goroutine of their own.
const actMinPer = 1 << 15

// ApplyActParallel is ApplyAct split between workers.
func ApplyActParallel(dst, src []float32, a Act) {
	parallel.For(len(src), actMinPer, func(lo, hi int) { ApplyAct(dst[lo:hi], src[lo:hi], a) })
}

// ActBackward sets dx = dy·a'(x) element-wise, split between workers.
func ActBackward(dx, dy, x []float32, a Act) {
	parallel.For(len(dy), actMinPer, func(lo, hi int) {
		d, xs, o := dy[lo:hi], x[lo:hi], dx[lo:hi]
		switch a.Kind {
		case ActReLU:
			reluGrad(o, d, xs)
		case ActHardSigmoid:
			for i, v := range xs {
				if y := a.A*v + a.B; y > 0 && y < 1 {
					o[i] = d[i] * a.A
				} else {
					o[i] = 0
				}
			}
		case ActHardSwish:
			hardSwishGrad(o, d, xs)
		default:
			for i, v := range xs {
				o[i] = d[i] * a.Deriv(v)
			}
		}
	})
}

// Epilogue is what follows a convolution or matrix product over its rows
// of output channels: a bias (or none) and an activation. It is immutable
// once made, so compiled programs share it between goroutines.
type Epilogue struct {
	Bias []float32 // one value per output channel, or nil
	Act  Act
	ones []float32 // len(Bias) ones, the scale of the vectorised Affine
}

// NewEpilogue returns the epilogue adding bias (nil for none) and then
// applying a.
func NewEpilogue(bias []float32, a Act) *Epilogue {
	e := &Epilogue{Bias: bias, Act: a}
	if bias != nil {
		e.ones = make([]float32, len(bias))
		for i := range e.ones {
			e.ones[i] = 1
		}
	}
	return e
}

// Nop reports whether the epilogue leaves data unchanged (a nil epilogue
// does).
func (e *Epilogue) Nop() bool { return e == nil || (e.Bias == nil && e.Act.Kind == ActNone) }

// Rows applies the epilogue to rows of len(Bias) values in place, on the
// calling goroutine.
func (e *Epilogue) Rows(data []float32) {
	if e.Nop() {
		return
	}
	if e.Bias == nil {
		ApplyAct(data, data, e.Act)
		return
	}
	width := len(e.Bias)
	if e.Act.Kind == ActNone || e.Act.Kind == ActReLU {
		Affine(data, data, width, e.ones, e.Bias, e.Act.Kind == ActReLU)
		return
	}
	a := e.Act
	for off := 0; off+width <= len(data); off += width {
		row := data[off : off+width : off+width]
		b := e.Bias[:len(row)]
		switch a.Kind {
		case ActClip:
			for i, v := range row {
				row[i] = min(max(v+b[i], a.A), a.B)
			}
		default:
			for i, v := range row {
				row[i] = a.Eval(v + b[i])
			}
		}
	}
}

// RowsFrom sets dst to src with the epilogue applied, in one pass where
// the vectorised kernel allows, on the calling goroutine.
func (e *Epilogue) RowsFrom(dst, src []float32) {
	if !e.Nop() && e.Bias != nil && (e.Act.Kind == ActNone || e.Act.Kind == ActReLU) {
		Affine(dst, src, len(e.Bias), e.ones, e.Bias, e.Act.Kind == ActReLU)
		return
	}
	copy(dst, src)
	e.Rows(dst)
}

// Apply is Rows split between workers.
func (e *Epilogue) Apply(data []float32) {
	if e.Nop() {
		return
	}
	if e.Bias == nil {
		ApplyActParallel(data, data, e.Act)
		return
	}
	width := len(e.Bias)
	parallel.For(len(data)/width, max(1, 8192/width), func(lo, hi int) {
		e.Rows(data[lo*width : hi*width])
	})
}
