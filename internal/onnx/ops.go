package onnx

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/kernels"
	"github.com/fashion-classifier/fashion/internal/onnx/onnxpb"
)

// handler compiles one operator: it reads the node's inputs (nil for an
// omitted optional input) and attributes and returns its outputs (a nil or
// missing entry for an output it does not compute).
type handler func(c *compiler, n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error)

// errUnsupported is returned for operators the loader does not know.
var errUnsupported = errors.New("operator is not supported")

func handlers() map[string]handler {
	act := func(kind kernels.ActKind) handler {
		return func(c *compiler, n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
			return c.activation(n, in, a, kind)
		}
	}
	bin := func(op infer.BinOp) handler {
		return func(c *compiler, n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
			return c.binary(n, in, a, op)
		}
	}
	return map[string]handler{
		"Identity": func(c *compiler, n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
			if err := need(in, 1, 1); err != nil {
				return nil, err
			}
			return []*value{alias(in[0])}, a.check()
		},
		"Dropout":            (*compiler).dropout,
		"Constant":           (*compiler).constantOp,
		"ConstantOfShape":    (*compiler).constantOfShape,
		"Cast":               (*compiler).cast,
		"Shape":              (*compiler).shape,
		"Gather":             (*compiler).gather,
		"Unsqueeze":          (*compiler).unsqueeze,
		"Squeeze":            (*compiler).squeeze,
		"Concat":             (*compiler).concat,
		"Reshape":            (*compiler).reshape,
		"Flatten":            (*compiler).flatten,
		"Add":                bin(infer.OpAdd),
		"Sub":                bin(infer.OpSub),
		"Mul":                bin(infer.OpMul),
		"Div":                bin(infer.OpDiv),
		"Relu":               act(kernels.ActReLU),
		"Clip":               act(kernels.ActClip),
		"Sigmoid":            act(kernels.ActSigmoid),
		"HardSigmoid":        act(kernels.ActHardSigmoid),
		"HardSwish":          act(kernels.ActHardSwish),
		"LeakyRelu":          act(kernels.ActLeakyReLU),
		"Conv":               (*compiler).conv,
		"BatchNormalization": (*compiler).batchNorm,
		"MaxPool":            (*compiler).pool,
		"AveragePool":        (*compiler).pool,
		"GlobalAveragePool":  (*compiler).globalPool,
		"Gemm":               (*compiler).gemm,
		"MatMul":             (*compiler).gemm,
		"Softmax":            (*compiler).softmaxOp,
		"Pad":                (*compiler).pad,
	}
}

// node compiles one node and records its outputs.
func (c *compiler) node(n *onnxpb.NodeProto) error {
	if d := n.GetDomain(); d != "" && d != "ai.onnx" {
		return fmt.Errorf("operator domain %q is not supported", d)
	}
	h, ok := c.handlers[n.GetOpType()]
	if !ok {
		return errUnsupported
	}
	in := make([]*value, len(n.GetInput()))
	for k, name := range n.GetInput() {
		if name == "" {
			continue
		}
		v, ok := c.vals[name]
		if !ok {
			return fmt.Errorf("input %q is not computed by any earlier node", name)
		}
		in[k] = v
	}
	outs, err := h(c, n, in, attrs(n))
	if err != nil {
		return err
	}
	for k, name := range n.GetOutput() {
		if name == "" {
			continue
		}
		if k >= len(outs) || outs[k] == nil {
			if c.uses[name] > 0 {
				return fmt.Errorf("output %d (%q) is used, but only the first output is supported", k, name)
			}
			continue
		}
		c.vals[name] = outs[k]
	}
	return nil
}

// alias returns v for a second name: per-batch values lose their producer,
// so that no later node fuses into a step whose output another name reads.
func alias(v *value) *value {
	if v.d == nil {
		return v
	}
	d := *v.d
	d.prod = nil
	return &value{d: &d}
}

// need checks that between lo and hi inputs are given and that the first
// lo are present.
func need(in []*value, lo, hi int) error {
	if len(in) < lo || len(in) > hi {
		return fmt.Errorf("has %d inputs; want %d to %d", len(in), lo, hi)
	}
	for k := range lo {
		if in[k] == nil {
			return fmt.Errorf("input %d is missing", k)
		}
	}
	return nil
}

// constIn returns input k as a constant, or nil if it is omitted.
func constIn(in []*value, k int, what string) (*constant, error) {
	if k >= len(in) || in[k] == nil {
		return nil, nil
	}
	if in[k].c == nil {
		return nil, fmt.Errorf("%s must be a constant, not computed from the image", what)
	}
	return in[k].c, nil
}

// dynIn returns input k as a per-batch value.
func dynIn(in []*value, k int) (*dynamic, error) {
	if in[k].d == nil {
		return nil, fmt.Errorf("input %d is a constant where image data is expected", k)
	}
	return in[k].d, nil
}

// ints reads an integer constant that must not involve the batch size.
func plainInts(k *constant, what string) ([]int64, error) {
	if k == nil {
		return nil, nil
	}
	if k.hasBatch() {
		return nil, fmt.Errorf("%s depends on the batch size, which is not supported", what)
	}
	return k.ints(), nil
}

func (c *compiler) dropout(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 1, 3); err != nil {
		return nil, err
	}
	if err := a.check("seed", "ratio"); err != nil {
		return nil, err
	}
	train, err := constIn(in, 2, "training_mode")
	if err != nil {
		return nil, err
	}
	if train != nil && train.size() == 1 && train.floats()[0] != 0 {
		return nil, fmt.Errorf("training_mode=true is not supported: this is an inference engine")
	}
	return []*value{alias(in[0])}, nil
}

func (c *compiler) constantOp(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if len(in) != 0 || len(a) != 1 {
		return nil, fmt.Errorf("want no inputs and exactly one attribute, got %d and %d", len(in), len(a))
	}
	var k *constant
	switch {
	case a["value"] != nil:
		var err error
		if k, err = decodeTensor(a["value"].GetT()); err != nil {
			return nil, err
		}
	case a["value_float"] != nil:
		k = &constant{f: []float32{a.float("value_float", 0)}}
	case a["value_floats"] != nil:
		f := a["value_floats"].GetFloats()
		k = &constant{dims: []int{len(f)}, f: slices.Clone(f)}
	case a["value_int"] != nil:
		k = &constant{isInt: true, i: []int64{a.int("value_int", 0)}}
	case a["value_ints"] != nil:
		v := a.ints("value_ints")
		k = &constant{dims: []int{len(v)}, isInt: true, i: slices.Clone(v)}
	default:
		for name := range a {
			return nil, fmt.Errorf("attribute %q is not supported", name)
		}
	}
	return []*value{{c: k}}, nil
}

func (c *compiler) constantOfShape(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 1, 1); err != nil {
		return nil, err
	}
	if err := a.check("value"); err != nil {
		return nil, err
	}
	sk, err := constIn(in, 0, "shape")
	if err != nil {
		return nil, err
	}
	s, err := plainInts(sk, "shape")
	if err != nil {
		return nil, err
	}
	dims, err := toInts(s)
	if err != nil {
		return nil, err
	}
	fill := &constant{f: []float32{0}}
	if t := a["value"]; t != nil {
		if fill, err = decodeTensor(t.GetT()); err != nil {
			return nil, err
		}
		if fill.size() != 1 {
			return nil, fmt.Errorf("value must have one element, has %d", fill.size())
		}
	}
	size, _ := numel(dims)
	out := &constant{dims: dims, isInt: fill.isInt}
	if fill.isInt {
		out.i = make([]int64, size)
		for k := range out.i {
			out.i[k] = fill.i[0]
		}
	} else {
		out.f = make([]float32, size)
		for k := range out.f {
			out.f[k] = fill.f[0]
		}
	}
	return []*value{{c: out}}, nil
}

func (c *compiler) cast(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 1, 1); err != nil {
		return nil, err
	}
	if err := a.check("to", "saturate"); err != nil {
		return nil, err
	}
	to := onnxpb.TensorProto_DataType(a.int("to", 0))
	isFloat := to == onnxpb.TensorProto_FLOAT || to == onnxpb.TensorProto_DOUBLE || to == onnxpb.TensorProto_FLOAT16
	isInt := to == onnxpb.TensorProto_INT64 || to == onnxpb.TensorProto_INT32 || to == onnxpb.TensorProto_INT8 ||
		to == onnxpb.TensorProto_INT16 || to == onnxpb.TensorProto_UINT8 || to == onnxpb.TensorProto_BOOL
	if !isFloat && !isInt {
		return nil, fmt.Errorf("cast to %v is not supported", to)
	}
	if d := in[0].d; d != nil {
		if !isFloat {
			return nil, fmt.Errorf("cast of image data to %v is not supported", to)
		}
		return []*value{alias(in[0])}, nil
	}
	k := in[0].c
	if isFloat == !k.isInt {
		return []*value{in[0]}, nil
	}
	if isFloat {
		if k.hasBatch() {
			return nil, fmt.Errorf("cast of the batch size to %v is not supported", to)
		}
		return []*value{{c: &constant{dims: k.dims, f: k.floats()}}}, nil
	}
	return []*value{{c: &constant{dims: k.dims, isInt: true, i: k.ints()}}}, nil
}

func (c *compiler) shape(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 1, 1); err != nil {
		return nil, err
	}
	if err := a.check("start", "end"); err != nil {
		return nil, err
	}
	var dims []int64
	var batch []bool
	if d := in[0].d; d != nil {
		dims, batch = []int64{0}, []bool{true}
		for _, v := range d.shape {
			dims, batch = append(dims, int64(v)), append(batch, false)
		}
	} else {
		for _, v := range in[0].c.dims {
			dims, batch = append(dims, int64(v)), append(batch, false)
		}
	}
	r := int64(len(dims))
	clamp := func(v int64) int64 {
		if v < 0 {
			v += r
		}
		return min(max(v, 0), r)
	}
	lo, hi := clamp(a.int("start", 0)), clamp(a.int("end", r))
	hi = max(hi, lo)
	return []*value{{c: &constant{dims: []int{int(hi - lo)}, isInt: true, i: dims[lo:hi], batch: batch[lo:hi]}}}, nil
}

func (c *compiler) gather(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 2, 2); err != nil {
		return nil, err
	}
	if err := a.check("axis"); err != nil {
		return nil, err
	}
	data, err := constIn(in, 0, "data (Gather on image data)")
	if err != nil {
		return nil, err
	}
	ik, err := constIn(in, 1, "indices")
	if err != nil {
		return nil, err
	}
	idx, err := plainInts(ik, "indices")
	if err != nil {
		return nil, err
	}
	if len(data.dims) == 0 {
		return nil, fmt.Errorf("cannot gather from a scalar")
	}
	axis, err := normAxis(a.int("axis", 0), len(data.dims))
	if err != nil {
		return nil, err
	}
	outer, _ := numel(data.dims[:axis])
	inner, _ := numel(data.dims[axis+1:])
	size := data.dims[axis]
	dims := slices.Concat(data.dims[:axis], ik.dims, data.dims[axis+1:])
	if _, err := numel(dims); err != nil {
		return nil, err
	}
	out := &constant{dims: dims, isInt: data.isInt}
	for o := range outer {
		for _, ix := range idx {
			if ix < 0 {
				ix += int64(size)
			}
			if ix < 0 || ix >= int64(size) {
				return nil, fmt.Errorf("index %d out of range for axis of size %d", ix, size)
			}
			from := (o*size + int(ix)) * inner
			if data.isInt {
				out.i = append(out.i, data.i[from:from+inner]...)
				if data.batch != nil {
					out.batch = append(out.batch, data.batch[from:from+inner]...)
				}
			} else {
				out.f = append(out.f, data.f[from:from+inner]...)
			}
		}
	}
	return []*value{{c: out}}, nil
}

// axesArg reads the axes of Squeeze/Unsqueeze: an input since opset 13, an
// attribute before.
func axesArg(in []*value, a attrSet) ([]int64, bool, error) {
	if err := a.check("axes"); err != nil {
		return nil, false, err
	}
	if v := a.ints("axes"); v != nil {
		return v, true, nil
	}
	k, err := constIn(in, 1, "axes")
	if err != nil || k == nil {
		return nil, false, err
	}
	v, err := plainInts(k, "axes")
	return v, true, err
}

func (c *compiler) unsqueeze(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 1, 2); err != nil {
		return nil, err
	}
	axes, ok, err := axesArg(in, a)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("axes are missing")
	}
	full, isDyn := fullDims(in[0])
	r := len(full) + len(axes)
	insert := make([]bool, r)
	for _, ax := range axes {
		k, err := normAxis(ax, r)
		if err != nil {
			return nil, err
		}
		if insert[k] {
			return nil, fmt.Errorf("axis %d given twice", ax)
		}
		insert[k] = true
	}
	var dims []int
	src := 0
	for k := range r {
		if insert[k] {
			dims = append(dims, 1)
		} else {
			dims = append(dims, full[src])
			src++
		}
	}
	return c.withDims(in[0], dims, isDyn)
}

func (c *compiler) squeeze(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 1, 2); err != nil {
		return nil, err
	}
	axes, ok, err := axesArg(in, a)
	if err != nil {
		return nil, err
	}
	full, isDyn := fullDims(in[0])
	drop := make([]bool, len(full))
	if !ok {
		for k, d := range full {
			drop[k] = d == 1 && !(isDyn && k == 0)
		}
	}
	for _, ax := range axes {
		k, err := normAxis(ax, len(full))
		if err != nil {
			return nil, err
		}
		if full[k] != 1 || (isDyn && k == 0) {
			return nil, fmt.Errorf("cannot squeeze axis %d of size %d", ax, full[k])
		}
		drop[k] = true
	}
	var dims []int
	for k, d := range full {
		if !drop[k] {
			dims = append(dims, d)
		}
	}
	return c.withDims(in[0], dims, isDyn)
}

// fullDims returns v's dims; for per-batch values the batch axis comes
// first, as -1.
func fullDims(v *value) ([]int, bool) {
	if v.d != nil {
		return append([]int{-1}, v.d.shape...), true
	}
	return v.c.dims, false
}

// withDims reshapes v to dims (which, for per-batch values, must keep the
// batch axis, marked -1, first).
func (c *compiler) withDims(v *value, dims []int, isDyn bool) ([]*value, error) {
	if !isDyn {
		k := *v.c
		k.dims = dims
		return []*value{{c: &k}}, nil
	}
	if len(dims) == 0 || dims[0] != -1 || slices.Contains(dims[1:], -1) {
		return nil, fmt.Errorf("moving the batch axis is not supported")
	}
	d, err := c.reshapeTo(v.d, dims[1:])
	if err != nil {
		return nil, err
	}
	return []*value{{d: d}}, nil
}

// reshapeTo gives the per-batch value d the per-image shape dims, which
// has the same number of values. Besides [C,H,W] maps, only shapes whose
// axes after the first are 1 ([F], [C,1], [C,1,1]) are supported: they
// all store their values one after the other.
func (c *compiler) reshapeTo(d *dynamic, dims []int) (*dynamic, error) {
	if len(dims) == 0 || (len(dims) != 3 && slices.ContainsFunc(dims[1:], func(v int) bool { return v != 1 })) {
		return nil, fmt.Errorf("per-image shape %v is not supported (want [C,H,W] or [features])", dims)
	}
	if n, err := numel(dims); err != nil || n != d.size() {
		return nil, fmt.Errorf("cannot reshape %v values per image to %v", d.size(), dims)
	}
	switch {
	case !spatial(dims) && !spatial(d.shape):
		return &dynamic{slot: d.slot, shape: dims, chw: d.chw, probs: d.probs}, nil
	case !spatial(dims): // flatten a map: free, remembering the storage order
		return &dynamic{slot: d.slot, shape: dims, chw: d.shape, probs: d.probs}, nil
	case slices.Equal(dims, d.shape):
		return &dynamic{slot: d.slot, shape: dims, probs: d.probs}, nil
	case !spatial(d.shape) && slices.Equal(d.chw, dims):
		return &dynamic{slot: d.slot, shape: dims, probs: d.probs}, nil
	case !spatial(d.shape):
		l := c.logical(d)
		out := c.newSlot()
		c.add(&infer.Transpose{In: l.slot, Out: out, C: dims[0], HW: dims[1] * dims[2]})
		return &dynamic{slot: out, shape: dims}, nil
	}
	return nil, fmt.Errorf("reshaping map %v to map %v is not supported", d.shape, dims)
}

// spatial reports whether a per-image shape is a map larger than 1×1.
func spatial(shape []int) bool { return len(shape) == 3 && shape[1]*shape[2] > 1 }

func (c *compiler) concat(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("has no inputs")
	}
	if err := a.check("axis"); err != nil {
		return nil, err
	}
	if err := need(in, len(in), len(in)); err != nil {
		return nil, err
	}
	if in[0].d != nil {
		return c.concatDyn(in, a.int("axis", 0))
	}
	ref := in[0].c
	axis, err := normAxis(a.int("axis", 0), len(ref.dims))
	if err != nil {
		return nil, err
	}
	dims := slices.Clone(ref.dims)
	dims[axis] = 0
	for _, v := range in {
		k := v.c
		if k == nil {
			return nil, fmt.Errorf("joining constants with image data is not supported")
		}
		if len(k.dims) != len(dims) || k.isInt != ref.isInt {
			return nil, fmt.Errorf("inputs have different ranks or types")
		}
		for j := range dims {
			if j != axis && k.dims[j] != ref.dims[j] {
				return nil, fmt.Errorf("shapes %v and %v differ outside axis %d", ref.dims, k.dims, axis)
			}
		}
		dims[axis] += k.dims[axis]
	}
	if _, err := numel(dims); err != nil {
		return nil, err
	}
	outer, _ := numel(dims[:axis])
	out := &constant{dims: dims, isInt: ref.isInt}
	withBatch := false
	for _, v := range in {
		withBatch = withBatch || v.c.hasBatch()
	}
	for o := range outer {
		for _, v := range in {
			k := v.c
			blk, _ := numel(k.dims[axis:])
			if k.isInt {
				out.i = append(out.i, k.i[o*blk:(o+1)*blk]...)
				if withBatch {
					for j := range blk {
						out.batch = append(out.batch, k.batchAt(o*blk+j))
					}
				}
			} else {
				out.f = append(out.f, k.f[o*blk:(o+1)*blk]...)
			}
		}
	}
	return []*value{{c: out}}, nil
}

func (c *compiler) concatDyn(in []*value, axis int64) ([]*value, error) {
	rank := len(in[0].d.shape) + 1
	if rank != 2 && rank != 4 {
		return nil, fmt.Errorf("joining per-image shapes %v is not supported", in[0].d.shape)
	}
	ax, err := normAxis(axis, rank)
	if err != nil {
		return nil, err
	}
	if ax != 1 {
		return nil, fmt.Errorf("axis=%d is not supported (only channels or features, axis 1)", axis)
	}
	st := &infer.Concat{Rows: 1}
	shape := slices.Clone(in[0].d.shape)
	shape[0] = 0
	for _, v := range in {
		d := v.d
		if d == nil {
			return nil, fmt.Errorf("joining constants with image data is not supported")
		}
		if len(d.shape) != len(shape) || (len(shape) == 3 && (d.shape[1] != shape[1] || d.shape[2] != shape[2])) {
			return nil, fmt.Errorf("per-image shapes %v and %v cannot be joined", in[0].d.shape, d.shape)
		}
		if len(shape) == 1 {
			d = c.logical(d)
		} else {
			st.Rows = shape[1] * shape[2]
		}
		st.Ins = append(st.Ins, d.slot)
		st.Widths = append(st.Widths, d.shape[0])
		shape[0] += d.shape[0]
	}
	if err := imageSize(shape); err != nil {
		return nil, err
	}
	st.Out = c.newSlot()
	c.add(st)
	return []*value{{d: &dynamic{slot: st.Out, shape: shape}}}, nil
}

func (c *compiler) reshape(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 2, 2); err != nil {
		return nil, err
	}
	if err := a.check("allowzero"); err != nil {
		return nil, err
	}
	allowZero := a.int("allowzero", 0) != 0
	target, err := constIn(in, 1, "shape")
	if err != nil {
		return nil, err
	}
	t := target.ints()
	if in[0].c != nil {
		if target.hasBatch() {
			return nil, fmt.Errorf("reshaping a constant by the batch size is not supported")
		}
		dims, err := resolveShape(t, in[0].c.dims, in[0].c.size(), allowZero)
		if err != nil {
			return nil, err
		}
		return c.withDims(in[0], dims, false)
	}
	d := in[0].d
	if len(t) == 0 {
		return nil, fmt.Errorf("cannot reshape images to a scalar")
	}
	switch {
	case target.batchAt(0), t[0] == 0 && !allowZero, t[0] == -1, c.batch > 0 && t[0] == int64(c.batch):
	default:
		return nil, fmt.Errorf("reshape to %v changes the batch axis, which is not supported", t)
	}
	for k := 1; k < len(t); k++ {
		if target.batchAt(k) {
			return nil, fmt.Errorf("reshape to a shape with the batch size past the first axis is not supported")
		}
	}
	if t[0] == -1 && slices.Contains(t[1:], -1) {
		return nil, fmt.Errorf("reshape to %v has two unknown dimensions", t)
	}
	dims, err := resolveShape(t[1:], d.shape, d.size(), allowZero)
	if err != nil {
		return nil, err
	}
	out, err := c.reshapeTo(d, dims)
	if err != nil {
		return nil, err
	}
	return []*value{{d: out}}, nil
}

// resolveShape turns a Reshape target into dims for a tensor of size values
// and shape old: 0 copies old's dimension (unless allowZero), -1 takes what
// is left.
func resolveShape(t []int64, old []int, size int, allowZero bool) ([]int, error) {
	dims := make([]int, len(t))
	infer := -1
	known := 1
	for k, v := range t {
		switch {
		case v == -1:
			if infer >= 0 {
				return nil, fmt.Errorf("shape %v has two -1 entries", t)
			}
			infer = k
			continue
		case v == 0 && !allowZero:
			if k >= len(old) {
				return nil, fmt.Errorf("shape %v copies dimension %d, which does not exist", t, k)
			}
			dims[k] = old[k]
		case v < 0 || v > maxElems:
			return nil, fmt.Errorf("shape %v has invalid entry %d", t, v)
		default:
			dims[k] = int(v)
		}
		if dims[k] > 0 && known > maxElems/dims[k] {
			return nil, fmt.Errorf("shape %v is too large", t)
		}
		known *= dims[k]
	}
	if infer >= 0 {
		if known == 0 || size%known != 0 {
			return nil, fmt.Errorf("cannot reshape %d values to %v", size, t)
		}
		dims[infer] = size / known
	} else if known != size {
		return nil, fmt.Errorf("cannot reshape %d values to %v", size, t)
	}
	return dims, nil
}

func (c *compiler) flatten(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 1, 1); err != nil {
		return nil, err
	}
	if err := a.check("axis"); err != nil {
		return nil, err
	}
	full, isDyn := fullDims(in[0])
	axis := a.int("axis", 1)
	if axis < 0 {
		axis += int64(len(full))
	}
	if axis < 0 || axis > int64(len(full)) {
		return nil, fmt.Errorf("axis=%d out of range for rank %d", a.int("axis", 1), len(full))
	}
	if isDyn {
		if axis != 1 {
			return nil, fmt.Errorf("axis=%d is not supported (only 1: one row per image)", a.int("axis", 1))
		}
		d, err := c.reshapeTo(in[0].d, []int{in[0].d.size()})
		if err != nil {
			return nil, err
		}
		return []*value{{d: d}}, nil
	}
	outer, _ := numel(full[:axis])
	inner, _ := numel(full[axis:])
	return c.withDims(in[0], []int{outer, inner}, false)
}

// binary compiles Add, Sub, Mul and Div.
func (c *compiler) binary(n *onnxpb.NodeProto, in []*value, a attrSet, op infer.BinOp) ([]*value, error) {
	if err := need(in, 2, 2); err != nil {
		return nil, err
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	x, y := in[0], in[1]
	switch {
	case x.c != nil && y.c != nil:
		k, err := foldBinary(x.c, y.c, op)
		if err != nil {
			return nil, err
		}
		return []*value{{c: k}}, nil
	case x.d != nil && y.d != nil:
		if op == infer.OpAdd {
			if v := c.fuseSum(n, x.d, y.d); v != nil {
				return v, nil
			}
		}
		return c.binaryDyn(x.d, y.d, op)
	}
	// One side is per-batch data, the other a constant.
	d, k, swap := x.d, y.c, false
	if d == nil {
		d, k, swap = y.d, x.c, true
	}
	bc, err := storageConst(k, d)
	if err != nil {
		return nil, err
	}
	return c.binaryConst(n, d, bc, op, swap)
}

// storageConst broadcasts k to one image of d in d's storage order and
// returns its shortest period: 1 for a scalar, C for a per-channel
// constant, else everything.
func storageConst(k *constant, d *dynamic) ([]float32, error) {
	if k.isInt && k.hasBatch() {
		return nil, fmt.Errorf("arithmetic on the batch size is not supported")
	}
	kd := k.dims
	if len(kd) > len(d.shape) {
		// Leading axes (the batch, and any size-1 axis before it) must be 1.
		extra := len(kd) - len(d.shape)
		for _, v := range kd[:extra] {
			if v != 1 {
				return nil, fmt.Errorf("constant of shape %v would broadcast over the batch axis", kd)
			}
		}
		kd = kd[extra:]
	}
	vals, err := expandTo(&constant{dims: kd, f: k.floats()}, d.shape)
	if err != nil {
		return nil, err
	}
	chw := d.chw
	if len(d.shape) == 3 {
		chw = d.shape
	}
	period := []int{1, d.shape[0]}
	if chw != nil {
		// ONNX order is C·H·W; storage is H·W·C.
		ch, hw := chw[0], chw[1]*chw[2]
		hwc := make([]float32, len(vals))
		for cc := range ch {
			for p := range hw {
				hwc[p*ch+cc] = vals[cc*hw+p]
			}
		}
		vals, period = hwc, []int{1, ch}
	}
	for _, p := range period {
		if p <= 0 || len(vals)%p != 0 {
			continue
		}
		periodic := true
		for j := p; j < len(vals) && periodic; j++ {
			periodic = vals[j] == vals[j-p]
		}
		if periodic {
			return vals[:p], nil
		}
	}
	return vals, nil
}

// binaryConst compiles d op bc (bc op d when swap is set), folding it into
// the step that computed d where possible.
func (c *compiler) binaryConst(n *onnxpb.NodeProto, d *dynamic, bc []float32, op infer.BinOp, swap bool) ([]*value, error) {
	if f := c.fusableInput(n.GetInput()[boolIndex(swap)], d); f != nil && f.Activation().Kind == kernels.ActNone && (!swap || op == infer.OpAdd || op == infer.OpMul) &&
		(len(bc) == 1 || len(bc) == f.OutChannels()) {
		m := f.OutChannels()
		scale, shift := make([]float32, m), make([]float32, m)
		for j := range m {
			v := bc[j%len(bc)]
			scale[j] = 1
			switch op {
			case infer.OpAdd:
				shift[j] = v
			case infer.OpSub:
				shift[j] = -v
			case infer.OpMul:
				scale[j] = v
			case infer.OpDiv:
				scale[j] = 1 / v
			}
		}
		if f.ScaleShift(scale, shift) {
			return []*value{{d: &dynamic{slot: d.slot, shape: d.shape, chw: d.chw, prod: f}}}, nil
		}
	}
	out := c.newSlot()
	c.add(&infer.Binary{A: d.slot, BSlot: -1, Out: out, Op: op, Swap: swap, Size: d.size(), BSize: len(bc), Const: bc})
	return []*value{{d: &dynamic{slot: out, shape: d.shape, chw: d.chw}}}, nil
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fuseSum compiles x + y as the convolution that computed one of them
// taking the other as a residual (infer.Conv.FuseAdd), moved after the
// steps that compute the other, and returns nil when neither can.
func (c *compiler) fuseSum(n *onnxpb.NodeProto, x, y *dynamic) []*value {
	if !slices.Equal(x.shape, y.shape) || x.chw != nil || y.chw != nil {
		return nil
	}
	for i, pair := range [2][2]*dynamic{{x, y}, {y, x}} {
		d, other := pair[0], pair[1]
		if conv, ok := c.fusableInput(n.GetInput()[i], d).(*infer.Conv); ok && conv.FuseAdd(other.slot) {
			c.b.MoveLast(conv)
			return []*value{{d: &dynamic{slot: d.slot, shape: d.shape, prod: conv}}}
		}
	}
	return nil
}

// binaryDyn compiles an operation between two per-batch values: of equal
// shape, or a map and a per-channel vector ([C,1,1], as in
// squeeze-and-excitation).
func (c *compiler) binaryDyn(x, y *dynamic, op infer.BinOp) ([]*value, error) {
	if !slices.Equal(x.chw, y.chw) {
		x, y = c.logical(x), c.logical(y)
	}
	swap := false
	if x.size() < y.size() {
		x, y, swap = y, x, true
	}
	switch {
	case slices.Equal(x.shape, y.shape):
	case len(x.shape) == 3 && len(y.shape) == 3 && x.shape[0] == y.shape[0] && y.shape[1] == 1 && y.shape[2] == 1:
	default:
		return nil, fmt.Errorf("per-image shapes %v and %v are not supported together", x.shape, y.shape)
	}
	out := c.newSlot()
	c.add(&infer.Binary{A: x.slot, BSlot: y.slot, Out: out, Op: op, Swap: swap, Size: x.size(), BSize: y.size()})
	return []*value{{d: &dynamic{slot: out, shape: x.shape, chw: x.chw}}}, nil
}

// foldBinary computes op on two constants with broadcasting.
func foldBinary(x, y *constant, op infer.BinOp) (*constant, error) {
	dims, err := broadcastDims(x.dims, y.dims)
	if err != nil {
		return nil, err
	}
	if _, err := numel(dims); err != nil {
		return nil, err
	}
	out := &constant{dims: dims}
	if x.isInt && y.isInt {
		if x.hasBatch() || y.hasBatch() {
			return nil, fmt.Errorf("arithmetic on the batch size is not supported")
		}
		out.isInt = true
		var divZero bool
		forEachBroadcast(dims, x.dims, y.dims, func(ia, ib int) {
			u, v := x.i[ia], y.i[ib]
			var r int64
			switch op {
			case infer.OpAdd:
				r = u + v
			case infer.OpSub:
				r = u - v
			case infer.OpMul:
				r = u * v
			default:
				if v == 0 {
					divZero = true
				} else {
					r = u / v
				}
			}
			out.i = append(out.i, r)
		})
		if divZero {
			return nil, fmt.Errorf("integer division by zero")
		}
		return out, nil
	}
	if x.hasBatch() || y.hasBatch() {
		return nil, fmt.Errorf("arithmetic on the batch size is not supported")
	}
	xf, yf := x.floats(), y.floats()
	forEachBroadcast(dims, x.dims, y.dims, func(ia, ib int) { out.f = append(out.f, op.Eval(xf[ia], yf[ib])) })
	return out, nil
}

// activation compiles the element-wise non-linearities.
func (c *compiler) activation(n *onnxpb.NodeProto, in []*value, a attrSet, kind kernels.ActKind) ([]*value, error) {
	f := kernels.Act{Kind: kind}
	switch kind {
	case kernels.ActClip:
		if err := need(in, 1, 3); err != nil {
			return nil, err
		}
		if err := a.check("min", "max"); err != nil { // attributes before opset 11
			return nil, err
		}
		f.A, f.B = a.float("min", float32(math.Inf(-1))), a.float("max", float32(math.Inf(1)))
		for k, dst := range []*float32{&f.A, &f.B} {
			b, err := constIn(in, k+1, "clip bound")
			if err != nil {
				return nil, err
			}
			if b != nil {
				if b.size() != 1 {
					return nil, fmt.Errorf("clip bound has %d values; want one", b.size())
				}
				*dst = b.floats()[0]
			}
		}
	case kernels.ActHardSigmoid:
		if err := need(in, 1, 1); err != nil {
			return nil, err
		}
		if err := a.check("alpha", "beta"); err != nil {
			return nil, err
		}
		f.A, f.B = a.float("alpha", 0.2), a.float("beta", 0.5)
	case kernels.ActLeakyReLU:
		if err := need(in, 1, 1); err != nil {
			return nil, err
		}
		if err := a.check("alpha"); err != nil {
			return nil, err
		}
		f.A = a.float("alpha", 0.01)
	default:
		if err := need(in, 1, 1); err != nil {
			return nil, err
		}
		if err := a.check(); err != nil {
			return nil, err
		}
	}
	if k := in[0].c; k != nil {
		if k.isInt {
			return nil, fmt.Errorf("activation of an integer constant is not supported")
		}
		out := &constant{dims: k.dims, f: make([]float32, len(k.f))}
		for j, v := range k.f {
			out.f[j] = f.Eval(v)
		}
		return []*value{{c: out}}, nil
	}
	d := in[0].d
	if p := c.fusableInput(n.GetInput()[0], d); p != nil {
		if both, ok := compose(p.Activation(), f); ok {
			p.SetActivation(both)
			return []*value{{d: &dynamic{slot: d.slot, shape: d.shape, chw: d.chw, prod: p}}}, nil
		}
	}
	out := c.newSlot()
	c.add(&infer.Unary{In: d.slot, Out: out, Size: d.size(), Act: f})
	return []*value{{d: &dynamic{slot: out, shape: d.shape, chw: d.chw}}}, nil
}

// window reads the attributes shared by Conv and the pools for a 2-D
// window of size kh×kw over an h×w map, and returns the output size.
type window struct {
	kh, kw, sh, sw, dh, dw int
	pt, pl, pb, pr         int
	oh, ow                 int
}

// maxWindow bounds kernel sizes, strides, dilations and pads, far above
// anything meaningful on 28×28 images, so that their products cannot
// overflow.
const maxWindow = 1 << 12

func readWindow(a attrSet, kh, kw, h, w int, ceil bool) (window, error) {
	win := window{kh: kh, kw: kw, sh: 1, sw: 1, dh: 1, dw: 1}
	pair := func(name string, dst1, dst2 *int, lo int) error {
		v := a.ints(name)
		if v == nil {
			return nil
		}
		if len(v) != 2 {
			return fmt.Errorf("%s=%v: want 2 values (2-D only)", name, v)
		}
		for _, x := range v {
			if x < int64(lo) || x > maxWindow {
				return fmt.Errorf("%s=%v is not supported", name, v)
			}
		}
		*dst1, *dst2 = int(v[0]), int(v[1])
		return nil
	}
	if err := pair("strides", &win.sh, &win.sw, 1); err != nil {
		return win, err
	}
	if err := pair("dilations", &win.dh, &win.dw, 1); err != nil {
		return win, err
	}
	if p := a.ints("pads"); p != nil {
		if len(p) != 4 {
			return win, fmt.Errorf("pads=%v: want 4 values", p)
		}
		for _, x := range p {
			if x < 0 || x > maxWindow {
				return win, fmt.Errorf("pads=%v is not supported", p)
			}
		}
		win.pt, win.pl, win.pb, win.pr = int(p[0]), int(p[1]), int(p[2]), int(p[3])
	}
	if kh < 1 || kw < 1 || kh > maxWindow || kw > maxWindow {
		return win, fmt.Errorf("kernel %d×%d is not supported", kh, kw)
	}
	switch pad := a.str("auto_pad", "NOTSET"); pad {
	case "NOTSET":
	case "VALID":
		win.pt, win.pl, win.pb, win.pr = 0, 0, 0, 0
	case "SAME_UPPER", "SAME_LOWER":
		same := func(in, k, s, d int) (int, int) {
			out := (in + s - 1) / s
			total := max(0, (out-1)*s+(k-1)*d+1-in)
			if pad == "SAME_UPPER" {
				return total / 2, total - total/2
			}
			return total - total/2, total / 2
		}
		win.pt, win.pb = same(h, kh, win.sh, win.dh)
		win.pl, win.pr = same(w, kw, win.sw, win.dw)
	default:
		return win, fmt.Errorf("auto_pad=%q is not supported", pad)
	}
	size := func(in, k, s, d, p0, p1 int) int {
		span := in + p0 + p1 - ((k-1)*d + 1)
		if span < 0 {
			return 0
		}
		if !ceil {
			return span/s + 1
		}
		o := (span+s-1)/s + 1
		if (o-1)*s >= in+p0 { // the last window would start in the padding
			o--
		}
		return o
	}
	win.oh = size(h, kh, win.sh, win.dh, win.pt, win.pb)
	win.ow = size(w, kw, win.sw, win.dw, win.pl, win.pr)
	if win.oh < 1 || win.ow < 1 {
		return win, fmt.Errorf("%d×%d window leaves no output on a %d×%d map", kh, kw, h, w)
	}
	return win, nil
}

func (c *compiler) conv(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 2, 3); err != nil {
		return nil, err
	}
	if err := a.check("kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"); err != nil {
		return nil, err
	}
	x, err := dynIn(in, 0)
	if err != nil {
		return nil, err
	}
	if len(x.shape) != 3 {
		return nil, fmt.Errorf("input has per-image shape %v; want a [C,H,W] map", x.shape)
	}
	wk, err := constIn(in, 1, "weight")
	if err != nil {
		return nil, err
	}
	bk, err := constIn(in, 2, "bias")
	if err != nil {
		return nil, err
	}
	if len(wk.dims) != 4 || wk.isInt {
		return nil, fmt.Errorf("weight has shape %v; want [M, C/group, kH, kW] floats", wk.dims)
	}
	m, cg, kh, kw := wk.dims[0], wk.dims[1], wk.dims[2], wk.dims[3]
	if ks := a.ints("kernel_shape"); ks != nil && (len(ks) != 2 || ks[0] != int64(kh) || ks[1] != int64(kw)) {
		return nil, fmt.Errorf("kernel_shape=%v does not match the weight's %v", ks, wk.dims)
	}
	g := a.int("group", 1)
	ch := x.shape[0]
	if g < 1 || g > int64(ch) || int64(ch)%g != 0 || int64(m)%g != 0 || cg != ch/int(g) || m == 0 {
		return nil, fmt.Errorf("group=%d with %d input channels and weight %v is inconsistent", g, ch, wk.dims)
	}
	groups := int(g)
	win, err := readWindow(a, kh, kw, x.shape[1], x.shape[2], false)
	if err != nil {
		return nil, err
	}
	if err := imageSize([]int{m, win.oh, win.ow}); err != nil {
		return nil, err
	}
	if err := imageSize([]int{win.oh * win.ow, kh * kw * cg}); err != nil {
		return nil, fmt.Errorf("unfolded patches: %w", err)
	}
	if err := c.addMACs(m, win.oh*win.ow, kh*kw*cg); err != nil {
		return nil, err
	}
	s := &infer.Conv{In: x.slot, Shape: kernels.ConvShape{C: ch, H: x.shape[1], W: x.shape[2], M: m, OH: win.oh, OW: win.ow,
		KH: kh, KW: kw, SH: win.sh, SW: win.sw, DH: win.dh, DW: win.dw, PT: win.pt, PL: win.pl, Groups: groups},
		Weight: c.weightName(wk)}
	src := wk.f
	if x.grey {
		// The three input channels carry the same grey image, so the
		// convolution of them equals that of one channel with the three
		// kernels summed.
		summed := make([]float32, m*kh*kw)
		for o := range m {
			for ci := range cg {
				for j := range kh * kw {
					summed[o*kh*kw+j] += src[(o*cg+ci)*kh*kw+j]
				}
			}
		}
		src, cg, s.Shape.C = summed, 1, 1
	}
	mg := m / groups
	s.W = make([]float32, len(src))
	if s.Shape.Depthwise() {
		for o := range m {
			for j := range kh * kw {
				s.W[j*m+o] = src[o*kh*kw+j]
			}
		}
	} else {
		kdim := kh * kw * cg
		for o := range m {
			gi, jo := o/mg, o%mg
			for ci := range cg {
				for ky := range kh {
					for kx := range kw {
						row := (ky*kw+kx)*cg + ci
						s.W[gi*kdim*mg+row*mg+jo] = src[((o*cg+ci)*kh+ky)*kw+kx]
					}
				}
			}
		}
	}
	if bk != nil {
		if bk.size() != m || bk.isInt {
			return nil, fmt.Errorf("bias has shape %v; want [%d]", bk.dims, m)
		}
		s.Bias = slices.Clone(bk.f)
	}
	s.Out = c.newSlot()
	c.add(s)
	return []*value{{d: &dynamic{slot: s.Out, shape: []int{m, win.oh, win.ow}, prod: s}}}, nil
}

func (c *compiler) batchNorm(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 5, 5); err != nil {
		return nil, err
	}
	if err := a.check("epsilon", "momentum", "training_mode", "spatial"); err != nil {
		return nil, err
	}
	if a.int("training_mode", 0) != 0 {
		return nil, fmt.Errorf("training_mode=1 is not supported: this is an inference engine")
	}
	if a.int("spatial", 1) != 1 {
		return nil, fmt.Errorf("spatial=0 is not supported")
	}
	x, err := dynIn(in, 0)
	if err != nil {
		return nil, err
	}
	x = c.logical(x)
	ch := x.shape[0]
	var p [4][]float32
	for k, name := range []string{"scale", "B", "mean", "var"} {
		v, err := constIn(in, k+1, name)
		if err != nil {
			return nil, err
		}
		if v.size() != ch {
			return nil, fmt.Errorf("%s has %d values for %d channels", name, v.size(), ch)
		}
		p[k] = v.floats()
	}
	eps := float64(a.float("epsilon", 1e-5))
	scale, shift := make([]float32, ch), make([]float32, ch)
	for k := range ch {
		scale[k] = float32(float64(p[0][k]) / math.Sqrt(float64(p[3][k])+eps))
		shift[k] = p[1][k] - p[2][k]*scale[k]
	}
	if f := c.fusableInput(n.GetInput()[0], x); f != nil && f.Activation().Kind == kernels.ActNone && f.OutChannels() == ch && f.ScaleShift(scale, shift) {
		return []*value{{d: &dynamic{slot: x.slot, shape: x.shape, prod: f}}}, nil
	}
	mul := c.newSlot()
	c.add(&infer.Binary{A: x.slot, BSlot: -1, Out: mul, Op: infer.OpMul, Size: x.size(), BSize: ch, Const: scale})
	out := c.newSlot()
	c.add(&infer.Binary{A: mul, BSlot: -1, Out: out, Op: infer.OpAdd, Size: x.size(), BSize: ch, Const: shift})
	return []*value{{d: &dynamic{slot: out, shape: x.shape}}}, nil
}

func (c *compiler) pool(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 1, 1); err != nil {
		return nil, err
	}
	isMax := n.GetOpType() == "MaxPool"
	known := []string{"kernel_shape", "strides", "pads", "ceil_mode", "auto_pad", "dilations"}
	if isMax {
		known = append(known, "storage_order")
	} else {
		known = append(known, "count_include_pad")
	}
	if err := a.check(known...); err != nil {
		return nil, err
	}
	x, err := dynIn(in, 0)
	if err != nil {
		return nil, err
	}
	if len(x.shape) != 3 {
		return nil, fmt.Errorf("input has per-image shape %v; want a [C,H,W] map", x.shape)
	}
	ks := a.ints("kernel_shape")
	if len(ks) != 2 || ks[0] < 1 || ks[1] < 1 || ks[0] > maxWindow || ks[1] > maxWindow {
		return nil, fmt.Errorf("kernel_shape=%v is not supported (want two positive sizes)", ks)
	}
	win, err := readWindow(a, int(ks[0]), int(ks[1]), x.shape[1], x.shape[2], a.int("ceil_mode", 0) != 0)
	if err != nil {
		return nil, err
	}
	if !isMax && (win.dh != 1 || win.dw != 1) {
		return nil, fmt.Errorf("dilations=%v is not supported for AveragePool", a.ints("dilations"))
	}
	shape := kernels.PoolShape{C: x.shape[0], H: x.shape[1], W: x.shape[2], OH: win.oh, OW: win.ow,
		KH: win.kh, KW: win.kw, SH: win.sh, SW: win.sw, DH: win.dh, DW: win.dw,
		PT: win.pt, PL: win.pl, PB: win.pb, PR: win.pr}
	if conv, ok := c.fusableInput(n.GetInput()[0], x).(*infer.Conv); ok && isMax && conv.FuseMaxPool(shape) {
		return []*value{{d: &dynamic{slot: x.slot, shape: []int{x.shape[0], win.oh, win.ow}}}}, nil
	}
	s := &infer.Pool{In: x.slot, Out: c.newSlot(), Max: isMax, IncludePad: a.int("count_include_pad", 0) != 0, Shape: shape}
	c.add(s)
	return []*value{{d: &dynamic{slot: s.Out, shape: []int{x.shape[0], win.oh, win.ow}}}}, nil
}

func (c *compiler) globalPool(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 1, 1); err != nil {
		return nil, err
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	x, err := dynIn(in, 0)
	if err != nil {
		return nil, err
	}
	if len(x.shape) != 3 {
		return nil, fmt.Errorf("input has per-image shape %v; want a [C,H,W] map", x.shape)
	}
	s := &infer.GlobalPool{In: x.slot, Out: c.newSlot(), C: x.shape[0], HW: x.shape[1] * x.shape[2]}
	c.add(s)
	return []*value{{d: &dynamic{slot: s.Out, shape: []int{x.shape[0], 1, 1}}}}, nil
}

// weightName is the initializer name of a layer's weights w (see
// infer.Conv.Weight) when w is an initializer that only this layer reads,
// else "".
func (c *compiler) weightName(w *constant) string {
	if w.name == "" || c.uses[w.name] != 1 {
		return ""
	}
	return w.name
}

// gemm compiles Gemm and MatMul of image features by a constant matrix.
func (c *compiler) gemm(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	isMatMul := n.GetOpType() == "MatMul"
	if isMatMul {
		if err := need(in, 2, 2); err != nil {
			return nil, err
		}
		if err := a.check(); err != nil {
			return nil, err
		}
	} else {
		if err := need(in, 2, 3); err != nil {
			return nil, err
		}
		if err := a.check("alpha", "beta", "transA", "transB"); err != nil {
			return nil, err
		}
		if a.int("transA", 0) != 0 {
			return nil, fmt.Errorf("transA=1 is not supported (the images must be the rows of A)")
		}
	}
	x, err := dynIn(in, 0)
	if err != nil {
		return nil, err
	}
	if len(x.shape) != 1 {
		return nil, fmt.Errorf("input has per-image shape %v; want features (flatten first)", x.shape)
	}
	bk, err := constIn(in, 1, "B")
	if err != nil {
		return nil, err
	}
	if len(bk.dims) != 2 {
		return nil, fmt.Errorf("B has shape %v; want a matrix", bk.dims)
	}
	bf := bk.floats()
	k, m := bk.dims[0], bk.dims[1]
	transB := !isMatMul && a.int("transB", 0) != 0
	if transB {
		k, m = m, k
	}
	if k != x.size() || m == 0 {
		return nil, fmt.Errorf("B has shape %v for %d input features", bk.dims, x.size())
	}
	if err := c.addMACs(k, m); err != nil {
		return nil, err
	}
	alpha := a.float("alpha", 1)
	s := &infer.Gemm{In: x.slot, K: k, M: m, W: make([]float32, k*m), Weight: c.weightName(bk)}
	// row maps the stored position of a feature to its row of B: the
	// identity, or the C·H·W index of an H·W·C-stored map.
	row := func(p int) int { return p }
	if x.chw != nil {
		ch, hw := x.chw[0], x.chw[1]*x.chw[2]
		row = func(p int) int { return (p%ch)*hw + p/ch }
	}
	for p := range k {
		r := row(p)
		for j := range m {
			v := bf[r*m+j]
			if transB {
				v = bf[j*k+r]
			}
			s.W[p*m+j] = alpha * v
		}
	}
	if ck, err := constIn(in, 2, "C"); err != nil {
		return nil, err
	} else if ck != nil {
		dims := ck.dims
		if len(dims) == 2 {
			if dims[0] != 1 {
				return nil, fmt.Errorf("C of shape %v varies per image, which is not supported", dims)
			}
			dims = dims[1:]
		}
		bias, err := expandTo(&constant{dims: dims, f: ck.floats()}, []int{m})
		if err != nil {
			return nil, err
		}
		beta := a.float("beta", 1)
		for j := range bias {
			bias[j] *= beta
		}
		s.Bias = bias
	}
	s.Out = c.newSlot()
	c.add(s)
	return []*value{{d: &dynamic{slot: s.Out, shape: []int{m}, prod: s}}}, nil
}

func (c *compiler) softmaxOp(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 1, 1); err != nil {
		return nil, err
	}
	if err := a.check("axis"); err != nil {
		return nil, err
	}
	x, err := dynIn(in, 0)
	if err != nil {
		return nil, err
	}
	axis, err := normAxis(a.int("axis", -1), len(x.shape)+1)
	if err != nil {
		return nil, err
	}
	if axis != 1 {
		return nil, fmt.Errorf("axis=%d is not supported (only over channels or features, axis 1)", a.int("axis", -1))
	}
	s := &infer.Softmax{In: x.slot, Out: c.newSlot(), Rows: 1, Width: x.shape[0]}
	if len(x.shape) == 3 {
		s.Rows = x.shape[1] * x.shape[2]
	} else {
		s.Width = x.size()
	}
	c.add(s)
	return []*value{{d: &dynamic{slot: s.Out, shape: x.shape, chw: x.chw, probs: true}}}, nil
}

// compose returns the activation next(first(x)) if it is one activation:
// anything after none, and a clip after a ReLU (PyTorch exports ReLU6 as
// Relu then Clip).
func compose(first, next kernels.Act) (kernels.Act, bool) {
	switch {
	case first.Kind == kernels.ActNone:
		return next, true
	case first.Kind == kernels.ActReLU && next.Kind == kernels.ActClip:
		return kernels.Act{Kind: kernels.ActClip, A: max(next.A, 0), B: max(next.B, 0)}, true
	case first.Kind == kernels.ActReLU && next.Kind == kernels.ActReLU:
		return first, true
	}
	return kernels.Act{}, false
}

// pad compiles a constant zero-or-value padding of the spatial axes of a
// map (PyTorch writes one before an AveragePool that counts the padding).
func (c *compiler) pad(n *onnxpb.NodeProto, in []*value, a attrSet) ([]*value, error) {
	if err := need(in, 1, 4); err != nil {
		return nil, err
	}
	if err := a.check("mode", "pads", "value"); err != nil {
		return nil, err
	}
	if mode := a.str("mode", "constant"); mode != "constant" {
		return nil, fmt.Errorf("mode=%q is not supported (only constant)", mode)
	}
	x, err := dynIn(in, 0)
	if err != nil {
		return nil, err
	}
	if len(x.shape) != 3 {
		return nil, fmt.Errorf("input has per-image shape %v; want a [C,H,W] map", x.shape)
	}
	pads := a.ints("pads")
	if pk, err := constIn(in, 1, "pads"); err != nil {
		return nil, err
	} else if pk != nil {
		if pads, err = plainInts(pk, "pads"); err != nil {
			return nil, err
		}
	}
	if ak, err := constIn(in, 3, "axes"); err != nil {
		return nil, err
	} else if ak != nil {
		return nil, fmt.Errorf("the axes input is not supported")
	}
	if len(pads) != 8 || pads[0] != 0 || pads[1] != 0 || pads[4] != 0 || pads[5] != 0 {
		return nil, fmt.Errorf("pads=%v is not supported (only height and width)", pads)
	}
	for _, p := range pads {
		if p < 0 || p > maxWindow {
			return nil, fmt.Errorf("pads=%v is not supported", pads)
		}
	}
	fill := a.float("value", 0)
	if vk, err := constIn(in, 2, "constant_value"); err != nil {
		return nil, err
	} else if vk != nil {
		if vk.size() != 1 {
			return nil, fmt.Errorf("constant_value has %d values; want one", vk.size())
		}
		fill = vk.floats()[0]
	}
	s := &infer.Pad{In: x.slot, Out: c.newSlot(), C: x.shape[0], H: x.shape[1], W: x.shape[2],
		PT: int(pads[2]), PL: int(pads[3]), PB: int(pads[6]), PR: int(pads[7]), Fill: fill}
	shape := []int{s.C, s.H + s.PT + s.PB, s.W + s.PL + s.PR}
	if err := imageSize(shape); err != nil {
		return nil, err
	}
	c.add(s)
	return []*value{{d: &dynamic{slot: s.Out, shape: shape}}}, nil
}
