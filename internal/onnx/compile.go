package onnx

import (
	"fmt"
	"slices"

	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/onnx/onnxpb"
)

// maxImage bounds the values per image of any tensor computed from the
// input, and of a convolution's unfolded patches, so that a model cannot
// make each image cost unbounded memory.
const maxImage = 1 << 22

// maxMACs bounds the multiply-adds per image of a model's convolutions and
// matrix products: 25 times a VGG of width 64, so that a damaged file
// cannot make loading (which runs one image) or serving take unbounded
// time.
const maxMACs = 1 << 30

// addMACs accounts for a layer's multiply-adds per image.
func (c *compiler) addMACs(dims ...int) error {
	n, err := numel(dims)
	if err != nil || n > maxMACs-c.macs {
		return fmt.Errorf("model needs more than %d multiply-adds per image", maxMACs)
	}
	c.macs += n
	return nil
}

// imageSize checks a per-image shape against maxImage.
func imageSize(dims []int) error {
	n, err := numel(dims)
	if err != nil {
		return err
	}
	if n > maxImage {
		return fmt.Errorf("per-image shape %v has %d values, more than the %d supported", dims, n, maxImage)
	}
	return nil
}

// dynamic describes a value computed per batch: a map [N,C,H,W] stored as
// NHWC, or features [N,F].
type dynamic struct {
	slot int
	// shape is the value's ONNX shape without the batch axis: [C,H,W] or
	// [F].
	shape []int
	// chw, for features, is the [C,H,W] map they were flattened from when
	// they are stored in that map's H·W·C order rather than ONNX's C·H·W
	// order; nil when features are stored in ONNX order. Flattening is
	// thereby free, and the layer that reads the features takes its
	// weights permuted to match.
	chw []int
	// prod is the step that computed this value and may still absorb a
	// following affine map or activation, or nil.
	prod infer.Fusable
	// probs records that the value went through Softmax.
	probs bool
	// grey marks the model input of a 3-channel model that is fed one
	// channel: every consumer is a convolution that sums its weights over
	// the input channels instead.
	grey bool
}

func (d *dynamic) size() int {
	n, _ := numel(d.shape)
	return n
}

// value is what the compiler knows about one named tensor of the graph:
// exactly one of c and d is set.
type value struct {
	c *constant
	d *dynamic
}

// compiler turns a GraphProto into a program.
type compiler struct {
	opset int
	vals  map[string]*value
	uses  map[string]int
	b     *infer.Builder
	// handlers compile each operator, by op_type.
	handlers map[string]handler
	macs     int // multiply-adds per image so far
	// batch is the input's declared batch size, or 0 when symbolic. A
	// Reshape target that starts with this number is taken to mean "the
	// batch", since exporters traced with a batch of one write 1 there.
	batch int
}

func (c *compiler) newSlot() int { return c.b.Slot() }

func (c *compiler) add(s infer.Step) { c.b.Add(s) }

// compile builds the program of g, a graph of the given opset, node by node
// (ONNX graphs list nodes in an order where inputs come first). The
// initializers named in dropped have no values and compile as zeros (see
// Int8).
func compile(g *onnxpb.GraphProto, opset int, dropped []string) (*infer.Program, error) {
	c := &compiler{opset: opset, vals: map[string]*value{}, uses: map[string]int{}, b: infer.NewBuilder(modelfile.Pixels), handlers: handlers()}
	zeros := map[string]bool{}
	for _, n := range dropped {
		zeros[n] = true
	}
	for _, t := range g.GetInitializer() {
		var k *constant
		var err error
		if zeros[t.GetName()] {
			delete(zeros, t.GetName())
			k, err = droppedTensor(t)
		} else {
			k, err = decodeTensor(t)
		}
		if err != nil {
			return nil, fmt.Errorf("initializer: %w", err)
		}
		k.name = t.GetName()
		c.vals[t.GetName()] = &value{c: k}
	}
	for n := range zeros {
		return nil, fmt.Errorf("the graph has no initializer %q, which the int8 file says it left out", n)
	}
	if len(g.GetSparseInitializer()) > 0 {
		return nil, fmt.Errorf("sparse initializers are not supported")
	}
	for _, n := range g.GetNode() {
		for _, in := range n.GetInput() {
			c.uses[in]++
		}
	}
	if len(g.GetOutput()) != 1 {
		return nil, fmt.Errorf("model has %d outputs; want exactly one (the class scores)", len(g.GetOutput()))
	}
	outName := g.GetOutput()[0].GetName()
	c.uses[outName]++
	if err := c.input(g); err != nil {
		return nil, err
	}
	for k, n := range g.GetNode() {
		if err := c.node(n); err != nil {
			name := n.GetName()
			if name == "" {
				name = fmt.Sprintf("#%d", k)
			}
			return nil, fmt.Errorf("node %s (%s, opset %d): %w", name, n.GetOpType(), opset, err)
		}
	}
	out, ok := c.vals[outName]
	if !ok {
		return nil, fmt.Errorf("no node computes the output %q", outName)
	}
	if out.d == nil {
		return nil, fmt.Errorf("output %q does not depend on the input", outName)
	}
	d := out.d
	if len(d.shape) == 3 {
		if d.shape[1] != 1 || d.shape[2] != 1 {
			return nil, fmt.Errorf("output %q has shape %v per image; want class scores", outName, d.shape)
		}
	} else if d.chw != nil {
		d = c.logical(d)
	}
	c.b.SetMACs(c.macs)
	return c.b.Finish(d.slot, d.size(), d.probs)
}

// input declares the graph's image input.
func (c *compiler) input(g *onnxpb.GraphProto) error {
	var in *onnxpb.ValueInfoProto
	for _, v := range g.GetInput() {
		if _, isInit := c.vals[v.GetName()]; isInit {
			continue // IR < 4 lists initializers as inputs too
		}
		if in != nil {
			return fmt.Errorf("model has inputs %q and %q; want exactly one (the images)", in.GetName(), v.GetName())
		}
		in = v
	}
	if in == nil {
		return fmt.Errorf("model has no input")
	}
	tt := in.GetType().GetTensorType()
	if tt == nil {
		return fmt.Errorf("input %q is not a tensor", in.GetName())
	}
	if dt := onnxpb.TensorProto_DataType(tt.GetElemType()); dt != onnxpb.TensorProto_FLOAT {
		return fmt.Errorf("input %q has element type %v; want FLOAT", in.GetName(), dt)
	}
	dims := tt.GetShape().GetDim()
	if len(dims) != 4 {
		return fmt.Errorf("input %q has rank %d; want [N,C,%d,%d] images", in.GetName(), len(dims), modelfile.Side, modelfile.Side)
	}
	// known returns the dimension's value, or -1 when it is symbolic.
	known := func(k int) int64 {
		if v, ok := dims[k].GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok && v.DimValue > 0 {
			return v.DimValue
		}
		return -1
	}
	if b := known(0); b > 0 && b <= maxElems {
		c.batch = int(b)
	}
	ch := known(1)
	if ch != 1 && ch != 3 {
		return fmt.Errorf("input %q has %d channels; want 1 (grayscale) or 3 (grayscale repeated)", in.GetName(), ch)
	}
	for _, k := range []int{2, 3} {
		if v := known(k); v != -1 && v != modelfile.Side {
			return fmt.Errorf("input %q is %d pixels along axis %d; this server feeds %d×%d images", in.GetName(), v, k, modelfile.Side, modelfile.Side)
		}
	}
	slot := c.b.Input()
	d := &dynamic{slot: slot, shape: []int{1, modelfile.Side, modelfile.Side}}
	if ch == 3 {
		if c.onlyConvs(g, in.GetName()) {
			d.shape[0], d.grey = 3, true
		} else {
			out := c.newSlot()
			c.add(&infer.Repeat{In: slot, Out: out, Size: modelfile.Pixels, Times: 3})
			d = &dynamic{slot: out, shape: []int{3, modelfile.Side, modelfile.Side}}
		}
	}
	c.vals[in.GetName()] = &value{d: d}
	return nil
}

// onlyConvs reports whether name is used only as the data input of
// ungrouped convolutions.
func (c *compiler) onlyConvs(g *onnxpb.GraphProto, name string) bool {
	for _, o := range g.GetOutput() {
		if o.GetName() == name {
			return false
		}
	}
	for _, n := range g.GetNode() {
		for k, in := range n.GetInput() {
			if in != name {
				continue
			}
			if n.GetOpType() != "Conv" || k != 0 || attrs(n).int("group", 1) != 1 {
				return false
			}
		}
	}
	return true
}

// logical returns features stored in ONNX order, adding a transpose when d
// is stored in map order.
func (c *compiler) logical(d *dynamic) *dynamic {
	if d.chw == nil {
		return d
	}
	if d.chw[1]*d.chw[2] == 1 {
		return &dynamic{slot: d.slot, shape: d.shape, probs: d.probs}
	}
	out := c.newSlot()
	c.add(&infer.Transpose{In: d.slot, Out: out, C: d.chw[0], HW: d.chw[1] * d.chw[2], ToCHW: true})
	return &dynamic{slot: out, shape: d.shape, probs: d.probs}
}

// fusableInput returns the step that computed d if the node reading d is
// its only reader and the step can still absorb more.
func (c *compiler) fusableInput(name string, d *dynamic) infer.Fusable {
	if d.prod == nil || c.uses[name] != 1 {
		return nil
	}
	return d.prod
}

// attrSet reads a node's attributes by name.
type attrSet map[string]*onnxpb.AttributeProto

func attrs(n *onnxpb.NodeProto) attrSet {
	m := attrSet{}
	for _, a := range n.GetAttribute() {
		m[a.GetName()] = a
	}
	return m
}

func (a attrSet) int(name string, def int64) int64 {
	if v, ok := a[name]; ok {
		return v.GetI()
	}
	return def
}

func (a attrSet) float(name string, def float32) float32 {
	if v, ok := a[name]; ok {
		return v.GetF()
	}
	return def
}

func (a attrSet) ints(name string) []int64 {
	if v, ok := a[name]; ok {
		return v.GetInts()
	}
	return nil
}

func (a attrSet) str(name, def string) string {
	if v, ok := a[name]; ok {
		return string(v.GetS())
	}
	return def
}

// check reports the first attribute not in known, so that a model relying
// on an attribute we would silently ignore fails to load instead.
func (a attrSet) check(known ...string) error {
	names := make([]string, 0, len(a))
	for n := range a {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if !slices.Contains(known, n) {
			return fmt.Errorf("attribute %q is not supported", n)
		}
	}
	return nil
}
