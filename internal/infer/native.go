package infer

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/fashion-classifier/fashion/internal/kernels"
	"github.com/fashion-classifier/fashion/internal/nn"
)

// Compile turns a trained network (evaluated in inference mode) over
// images of h×w pixels and c channels into a program: the front end for
// our own networks. Each batch norm is folded into the convolution or
// fully connected layer before it (or becomes one per-channel affine step
// when there is none) and activations are fused into the epilogue of the
// layer before them. Weights are copied, so the network may change or be
// trained further without affecting the program.
func Compile(net nn.Layer, h, w, c int) (*Program, error) {
	n := &native{b: NewBuilder(h * w * c)}
	v, err := n.layer(net, value{slot: n.b.Input(), h: h, w: w, c: c}, "")
	if err != nil {
		return nil, err
	}
	n.b.SetMACs(n.macs)
	return n.b.Finish(v.slot, v.h*v.w*v.c, false)
}

// native is the state of Compile.
type native struct {
	b    *Builder
	macs int
}

// value is a tensor of the program being compiled: its slot, its shape
// per image (h×w×c, NHWC), and the step that wrote it if that step may
// still absorb a following batch norm or activation.
type value struct {
	slot    int
	h, w, c int
	prod    Fusable
}

func (v value) size() int { return v.h * v.w * v.c }

// layer compiles l applied to v; name locates it in errors.
func (n *native) layer(l nn.Layer, v value, name string) (value, error) {
	switch l := l.(type) {
	case *nn.Sequential:
		for i, sub := range l.Layers {
			part := strconv.Itoa(i)
			if i < len(l.Names) && l.Names[i] != "" {
				part = l.Names[i]
			}
			if name != "" {
				part = name + "." + part
			}
			var err error
			if v, err = n.layer(sub, v, part); err != nil {
				return v, err
			}
		}
		return v, nil
	case *nn.Conv2D:
		if v.c != l.In {
			return v, fmt.Errorf("infer: layer %q: Conv2D over %d channels got %d", name, l.In, v.c)
		}
		sh := kernels.SquareConv(l.In, v.h, v.w, l.Out, l.K, l.Stride, l.Pad)
		var bias []float32
		if l.B != nil {
			bias = slices.Clone(l.B.Value)
		}
		var act kernels.Act
		if l.ReLU {
			act = kernels.ReLU
		}
		return n.conv(v, sh, slices.Clone(l.W.Value), bias, act, name, join(name, l.W.Name))
	case *nn.DepthwiseConv:
		if v.c != l.C {
			return v, fmt.Errorf("infer: layer %q: DepthwiseConv over %d channels got %d", name, l.C, v.c)
		}
		sh := kernels.SquareConv(l.C, v.h, v.w, l.C, l.K, l.Stride, l.Pad)
		sh.Groups = l.C
		return n.conv(v, sh, slices.Clone(l.W.Value), nil, kernels.Act{}, name, join(name, l.W.Name))
	case *nn.BatchNorm:
		return n.batchNorm(l, v, name)
	case *nn.Activation:
		a := kernels.ReLU
		switch l.Kind {
		case nn.HardSigmoid:
			a = kernels.HardSigmoid
		case nn.HardSwish:
			a = kernels.HardSwish
		}
		if v.prod != nil && v.prod.Activation().Kind == kernels.ActNone {
			v.prod.SetActivation(a)
			return v, nil
		}
		out := n.b.Slot()
		n.b.Add(&Unary{In: v.slot, Out: out, Size: v.size(), Act: a})
		return value{slot: out, h: v.h, w: v.w, c: v.c}, nil
	case *nn.MaxPool:
		sh := kernels.SquarePool(v.c, v.h, v.w, l.K, l.Stride)
		if sh.OH < 1 || sh.OW < 1 {
			return v, fmt.Errorf("infer: layer %q: %d×%d pool over %d×%d maps", name, l.K, l.K, v.h, v.w)
		}
		if c, ok := v.prod.(*Conv); ok && c.FuseMaxPool(sh) {
			return value{slot: v.slot, h: sh.OH, w: sh.OW, c: v.c}, nil
		}
		out := n.b.Slot()
		n.b.Add(&Pool{In: v.slot, Out: out, Shape: sh, Max: true})
		return value{slot: out, h: sh.OH, w: sh.OW, c: v.c}, nil
	case *nn.GlobalAvgPool:
		out := n.b.Slot()
		n.b.Add(&GlobalPool{In: v.slot, Out: out, C: v.c, HW: v.h * v.w})
		return value{slot: out, h: 1, w: 1, c: v.c}, nil
	case *nn.Flatten:
		// NHWC storage is already the H·W·C feature order nn.Flatten gives.
		return value{slot: v.slot, h: 1, w: 1, c: v.size()}, nil
	case *nn.Dropout:
		return v, nil // the identity in inference
	case *nn.Linear:
		if v.size() != l.In {
			return v, fmt.Errorf("infer: layer %q: Linear with %d inputs got %d×%d×%d", name, l.In, v.h, v.w, v.c)
		}
		out := n.b.Slot()
		g := &Gemm{In: v.slot, Out: out, K: l.In, M: l.Out, W: slices.Clone(l.W.Value), Bias: slices.Clone(l.B.Value), Weight: join(name, l.W.Name)}
		n.b.Add(g)
		n.macs += l.In * l.Out
		return value{slot: out, h: 1, w: 1, c: l.Out, prod: g}, nil
	case *nn.SqueezeExcite:
		in := value{slot: v.slot, h: v.h, w: v.w, c: v.c}
		g, err := n.layer(l.Gate(), in, name+".gate")
		if err != nil {
			return v, err
		}
		if g.size() != v.c {
			return v, fmt.Errorf("infer: layer %q: gate of %d values for %d channels", name, g.size(), v.c)
		}
		out := n.b.Slot()
		n.b.Add(&Binary{A: v.slot, BSlot: g.slot, Out: out, Op: OpMul, Size: v.size(), BSize: v.c})
		return value{slot: out, h: v.h, w: v.w, c: v.c}, nil
	case *nn.Residual:
		// The shortcut first, so that the body's last convolution can
		// take the sum (Conv.FuseAdd).
		in := value{slot: v.slot, h: v.h, w: v.w, c: v.c}
		s := in
		var err error
		if l.Shortcut != nil {
			if s, err = n.layer(l.Shortcut, in, name+".shortcut"); err != nil {
				return v, err
			}
		}
		y, err := n.layer(l.Body, in, name+".body")
		if err != nil {
			return v, err
		}
		if y.h != s.h || y.w != s.w || y.c != s.c {
			return v, fmt.Errorf("infer: layer %q: residual body maps %d×%d×%d to %d×%d×%d, its shortcut to %d×%d×%d", name, v.h, v.w, v.c, y.h, y.w, y.c, s.h, s.w, s.c)
		}
		if c, ok := y.prod.(*Conv); ok && y.slot != in.slot && c.FuseAdd(s.slot) {
			return value{slot: y.slot, h: y.h, w: y.w, c: y.c, prod: c}, nil
		}
		out := n.b.Slot()
		n.b.Add(&Binary{A: s.slot, BSlot: y.slot, Out: out, Op: OpAdd, Size: s.size(), BSize: s.size()})
		return value{slot: out, h: s.h, w: s.w, c: s.c}, nil
	}
	return v, fmt.Errorf("infer: layer %q: %T has no inference form", name, l)
}

// join is the parameter name nn.Sequential.Params gives parameter param
// of the layer at path.
func join(path, param string) string {
	if path == "" {
		return param
	}
	return path + "." + param
}

// conv adds a convolution step; weight names the tensor w came from.
func (n *native) conv(v value, sh kernels.ConvShape, w, bias []float32, act kernels.Act, name, weight string) (value, error) {
	if err := sh.Check(); err != nil {
		return v, fmt.Errorf("infer: layer %q: %w", name, err)
	}
	if len(w) != sh.WeightLen() {
		return v, fmt.Errorf("infer: layer %q: %d weights for a convolution that needs %d", name, len(w), sh.WeightLen())
	}
	out := n.b.Slot()
	s := &Conv{In: v.slot, Out: out, Shape: sh, W: w, Bias: bias, Act: act, Weight: weight}
	n.b.Add(s)
	n.macs += sh.MACs()
	return value{slot: out, h: sh.OH, w: sh.OW, c: sh.M, prod: s}, nil
}

// batchNorm folds an inference-mode batch norm into the step before it or
// adds it as a per-channel affine step.
func (n *native) batchNorm(l *nn.BatchNorm, v value, name string) (value, error) {
	if v.c != l.C {
		return v, fmt.Errorf("infer: layer %q: BatchNorm over %d channels got %d", name, l.C, v.c)
	}
	scale, shift := make([]float32, l.C), make([]float32, l.C)
	for i := range l.C {
		s := float64(l.Gamma.Value[i]) / math.Sqrt(float64(l.RunVar.Value[i])+float64(l.Eps))
		scale[i] = float32(s)
		shift[i] = float32(float64(l.Beta.Value[i]) - float64(l.RunMean.Value[i])*s)
	}
	if p := v.prod; p != nil && p.Activation().Kind == kernels.ActNone && p.OutChannels() == l.C && p.ScaleShift(scale, shift) {
		if l.ReLU {
			p.SetActivation(kernels.ReLU)
		}
		return v, nil
	}
	out := n.b.Slot()
	n.b.Add(&Affine{In: v.slot, Out: out, Size: v.size(), Scale: scale, Shift: shift, ReLU: l.ReLU})
	return value{slot: out, h: v.h, w: v.w, c: v.c}, nil
}
