package onnx

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/nn"
	"github.com/fashion-classifier/fashion/internal/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// ExportOpset is the operator set Export writes: the oldest the loader
// reads, so that other runtimes are most likely to run the file too.
const ExportOpset = 13

// ExportMeta is what Export records about a network besides its layers.
type ExportMeta struct {
	Name      string // graph name
	Arch      string
	Classes   []string
	Mean, Std float32
	// TestAccuracy is stored when positive.
	TestAccuracy float64
	// Temperature, the model's calibration, is stored when positive; the
	// graph's "logits" stay uncalibrated, so other runtimes get the
	// network's own outputs and our loader divides them as for our files.
	Temperature float64
}

// Export writes net, which takes [N,1,28,28] images, as a standard NCHW
// ONNX model (opset 13, input "input", output "logits", dynamic batch).
// Class names and normalisation go into the model's metadata_props, where
// the loader reads them back.
func Export(net *nn.Sequential, meta ExportMeta) ([]byte, error) {
	e := &exporter{g: &onnxpb.GraphProto{Name: proto.String(meta.Name)}, shape: []int{1, modelfile.Side, modelfile.Side}}
	x, err := e.seq(net, "", "input")
	if err != nil {
		return nil, err
	}
	if len(e.shape) != 1 || e.shape[0] != len(meta.Classes) {
		return nil, fmt.Errorf("network ends in per-image shape %v; want %d class scores", e.shape, len(meta.Classes))
	}
	e.node("Identity", "logits", []string{x}, "logits")
	e.g.Input = []*onnxpb.ValueInfoProto{valueInfo("input", []int{1, modelfile.Side, modelfile.Side})}
	e.g.Output = []*onnxpb.ValueInfoProto{valueInfo("logits", []int{len(meta.Classes)})}
	classes, err := json.Marshal(meta.Classes)
	if err != nil {
		return nil, err
	}
	props := []*onnxpb.StringStringEntryProto{
		{Key: proto.String("arch"), Value: proto.String(meta.Arch)},
		{Key: proto.String("classes"), Value: proto.String(string(classes))},
		{Key: proto.String("mean"), Value: proto.String(strconv.FormatFloat(float64(meta.Mean), 'g', -1, 32))},
		{Key: proto.String("std"), Value: proto.String(strconv.FormatFloat(float64(meta.Std), 'g', -1, 32))},
	}
	if meta.TestAccuracy > 0 {
		props = append(props, &onnxpb.StringStringEntryProto{Key: proto.String("test_accuracy"),
			Value: proto.String(strconv.FormatFloat(meta.TestAccuracy, 'f', 4, 64))})
	}
	if meta.Temperature > 0 {
		props = append(props, &onnxpb.StringStringEntryProto{Key: proto.String("temperature"),
			Value: proto.String(strconv.FormatFloat(meta.Temperature, 'g', -1, 64))})
	}
	m := &onnxpb.ModelProto{
		IrVersion:     proto.Int64(7), // the IR version of opset 13
		ProducerName:  proto.String("fashion"),
		OpsetImport:   []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(ExportOpset)}},
		Graph:         e.g,
		MetadataProps: props,
	}
	return proto.Marshal(m)
}

// exporter appends nodes and initializers to a graph while tracking the
// per-image shape (ONNX order, [C,H,W] or [F]) of the current tensor.
type exporter struct {
	g     *onnxpb.GraphProto
	shape []int
	// hwc is set when the current features were flattened by the engine,
	// i.e. in H·W·C order: the [C,H,W] map they came from. ONNX's Flatten
	// gives C·H·W order, so the next Linear's rows are permuted.
	hwc []int
	n   int // nodes written, for unique names
}

func valueInfo(name string, perImage []int) *onnxpb.ValueInfoProto {
	dims := []*onnxpb.TensorShapeProto_Dimension{{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}}}
	for _, d := range perImage {
		dims = append(dims, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}})
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), Shape: &onnxpb.TensorShapeProto{Dim: dims}},
	}}}
}

// node appends a node named name (made unique) and returns its output.
func (e *exporter) node(op, name string, inputs []string, out string, attrs ...*onnxpb.AttributeProto) string {
	e.n++
	if out == "" {
		out = fmt.Sprintf("%s_%d", name, e.n)
	}
	e.g.Node = append(e.g.Node, &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(fmt.Sprintf("%s_%d", name, e.n)),
		Input: inputs, Output: []string{out}, Attribute: attrs})
	return out
}

// weight adds an initializer and returns its name.
func (e *exporter) weight(name string, dims []int, data []float32) string {
	t := &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), FloatData: data}
	for _, d := range dims {
		t.Dims = append(t.Dims, int64(d))
	}
	e.g.Initializer = append(e.g.Initializer, t)
	return name
}

func intsAttr(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func floatAttr(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// seq exports the layers of s applied to x.
func (e *exporter) seq(s *nn.Sequential, prefix, x string) (string, error) {
	for i, l := range s.Layers {
		name := strconv.Itoa(i)
		if i < len(s.Names) && s.Names[i] != "" {
			name = s.Names[i]
		}
		var err error
		if x, err = e.layer(l, join(prefix, name), x); err != nil {
			return "", fmt.Errorf("layer %s: %w", join(prefix, name), err)
		}
	}
	return x, nil
}

func (e *exporter) needMap() error {
	if len(e.shape) != 3 {
		return fmt.Errorf("needs a [C,H,W] map, has per-image shape %v", e.shape)
	}
	return nil
}

// layer exports one layer applied to x and returns its output's name.
func (e *exporter) layer(l nn.Layer, name, x string) (string, error) {
	switch l := l.(type) {
	case *nn.Sequential:
		return e.seq(l, name, x)
	case *nn.Conv2D:
		if err := e.needMap(); err != nil {
			return "", err
		}
		if e.shape[0] != l.In {
			return "", fmt.Errorf("has %d input channels, gets %d", l.In, e.shape[0])
		}
		w := make([]float32, len(l.W.Value)) // [Out, In, K, K] from [(ky,kx,ci), co]
		for ky := range l.K {
			for kx := range l.K {
				for ci := range l.In {
					for co := range l.Out {
						w[((co*l.In+ci)*l.K+ky)*l.K+kx] = l.W.Value[((ky*l.K+kx)*l.In+ci)*l.Out+co]
					}
				}
			}
		}
		in := []string{x, e.weight(name+".weight", []int{l.Out, l.In, l.K, l.K}, w)}
		if l.B != nil {
			in = append(in, e.weight(name+".bias", []int{l.Out}, l.B.Value))
		}
		e.shape = []int{l.Out, (e.shape[1]+2*l.Pad-l.K)/l.Stride + 1, (e.shape[2]+2*l.Pad-l.K)/l.Stride + 1}
		return e.node("Conv", name, in, "", intsAttr("kernel_shape", int64(l.K), int64(l.K)),
			intsAttr("strides", int64(l.Stride), int64(l.Stride)), intsAttr("pads", int64(l.Pad), int64(l.Pad), int64(l.Pad), int64(l.Pad))), nil
	case *nn.DepthwiseConv:
		if err := e.needMap(); err != nil {
			return "", err
		}
		w := make([]float32, len(l.W.Value)) // [C, 1, K, K] from [K·K, C]
		for k := range l.K * l.K {
			for ch := range l.C {
				w[ch*l.K*l.K+k] = l.W.Value[k*l.C+ch]
			}
		}
		in := []string{x, e.weight(name+".weight", []int{l.C, 1, l.K, l.K}, w)}
		e.shape = []int{l.C, (e.shape[1]+2*l.Pad-l.K)/l.Stride + 1, (e.shape[2]+2*l.Pad-l.K)/l.Stride + 1}
		return e.node("Conv", name, in, "", intsAttr("kernel_shape", int64(l.K), int64(l.K)), intAttr("group", int64(l.C)),
			intsAttr("strides", int64(l.Stride), int64(l.Stride)), intsAttr("pads", int64(l.Pad), int64(l.Pad), int64(l.Pad), int64(l.Pad))), nil
	case *nn.BatchNorm:
		in := []string{x,
			e.weight(name+".weight", []int{l.C}, l.Gamma.Value), e.weight(name+".bias", []int{l.C}, l.Beta.Value),
			e.weight(name+".running_mean", []int{l.C}, l.RunMean.Value), e.weight(name+".running_var", []int{l.C}, l.RunVar.Value)}
		y := e.node("BatchNormalization", name, in, "", floatAttr("epsilon", l.Eps))
		if l.ReLU {
			y = e.node("Relu", name+".relu", []string{y}, "")
		}
		return y, nil
	case *nn.Activation:
		return e.activation(l.Kind, name, x)
	case *nn.MaxPool:
		if err := e.needMap(); err != nil {
			return "", err
		}
		e.shape = []int{e.shape[0], (e.shape[1]-l.K)/l.Stride + 1, (e.shape[2]-l.K)/l.Stride + 1}
		return e.node("MaxPool", name, []string{x}, "", intsAttr("kernel_shape", int64(l.K), int64(l.K)),
			intsAttr("strides", int64(l.Stride), int64(l.Stride))), nil
	case *nn.GlobalAvgPool:
		if err := e.needMap(); err != nil {
			return "", err
		}
		e.shape = []int{e.shape[0], 1, 1}
		return e.node("GlobalAveragePool", name, []string{x}, ""), nil
	case *nn.Flatten:
		return e.flatten(name, x, true)
	case *nn.Dropout:
		return x, nil // the identity at inference
	case *nn.Linear:
		if len(e.shape) == 3 {
			var err error
			if x, err = e.flatten(name+".flatten", x, false); err != nil {
				return "", err
			}
		}
		if e.shape[0] != l.In {
			return "", fmt.Errorf("has %d inputs, gets %d", l.In, e.shape[0])
		}
		w := l.W.Value // [In, Out]: ONNX Gemm's B without transB
		if e.hwc != nil {
			// Row r of ONNX's C·H·W-ordered input is row p of ours.
			ch, hw := e.hwc[0], e.hwc[1]*e.hwc[2]
			w = make([]float32, len(l.W.Value))
			for p := range l.In {
				r := (p%ch)*hw + p/ch
				copy(w[r*l.Out:(r+1)*l.Out], l.W.Value[p*l.Out:(p+1)*l.Out])
			}
		}
		e.shape, e.hwc = []int{l.Out}, nil
		return e.node("Gemm", name, []string{x, e.weight(name+".weight", []int{l.In, l.Out}, w),
			e.weight(name+".bias", []int{l.Out}, l.B.Value)}, ""), nil
	case *nn.SqueezeExcite:
		return e.squeezeExcite(l, name, x)
	case *nn.Residual:
		in := e.shape
		y, err := e.seq(l.Body, name+".body", x)
		if err != nil {
			return "", err
		}
		out, short := e.shape, x
		if l.Shortcut != nil {
			e.shape = in
			if short, err = e.seq(l.Shortcut, name+".shortcut", x); err != nil {
				return "", err
			}
		}
		if fmt.Sprint(out) != fmt.Sprint(e.shape) {
			return "", fmt.Errorf("residual body maps %v to %v, its shortcut to %v", in, out, e.shape)
		}
		return e.node("Add", name, []string{short, y}, ""), nil
	}
	return "", fmt.Errorf("layer type %T has no ONNX export", l)
}

// flatten turns the current map into features. engine says the engine's
// own Flatten did it, so the features it feeds on are in H·W·C order.
func (e *exporter) flatten(name, x string, engine bool) (string, error) {
	if len(e.shape) != 3 {
		return x, nil
	}
	if engine && e.shape[1]*e.shape[2] > 1 {
		e.hwc = e.shape
	}
	e.shape = []int{e.shape[0] * e.shape[1] * e.shape[2]}
	return e.node("Flatten", name, []string{x}, "", intAttr("axis", 1)), nil
}

func (e *exporter) activation(k nn.ActKind, name, x string) (string, error) {
	switch k {
	case nn.ReLU:
		return e.node("Relu", name, []string{x}, ""), nil
	case nn.HardSigmoid:
		return e.node("HardSigmoid", name, []string{x}, "", floatAttr("alpha", 1.0/6), floatAttr("beta", 0.5)), nil
	case nn.HardSwish:
		// HardSwish is an operator only from opset 14; before, it is
		// x·HardSigmoid(x), as PyTorch writes it for opset 13.
		g := e.node("HardSigmoid", name+".gate", []string{x}, "", floatAttr("alpha", 1.0/6), floatAttr("beta", 0.5))
		return e.node("Mul", name, []string{x, g}, ""), nil
	}
	return "", fmt.Errorf("activation kind %d has no ONNX export", k)
}

// squeezeExcite writes the block as torchvision's layout does: global
// pool, two 1×1 convolutions, hard-sigmoid gate, channel-wise product.
func (e *exporter) squeezeExcite(s *nn.SqueezeExcite, name, x string) (string, error) {
	if err := e.needMap(); err != nil {
		return "", err
	}
	p := map[string]*nn.Param{}
	for _, q := range s.Params() {
		p[q.Name] = q
	}
	w1, b1, w2, b2 := p["fc1.weight"], p["fc1.bias"], p["fc2.weight"], p["fc2.bias"]
	if w1 == nil || b1 == nil || w2 == nil || b2 == nil || len(w1.Shape) != 2 || len(w2.Shape) != 2 {
		return "", fmt.Errorf("squeeze-excite parameters are not fc1/fc2 weight and bias matrices")
	}
	c, sq := w1.Shape[0], w1.Shape[1]
	if c != e.shape[0] || w2.Shape[0] != sq || w2.Shape[1] != c {
		return "", fmt.Errorf("squeeze-excite weights %v, %v do not fit %d channels", w1.Shape, w2.Shape, e.shape[0])
	}
	// A Linear's [In, Out] weight is a 1×1 convolution's [Out, In, 1, 1]
	// transposed.
	transpose := func(w []float32, in, out int) []float32 {
		t := make([]float32, len(w))
		for i := range in {
			for o := range out {
				t[o*in+i] = w[i*out+o]
			}
		}
		return t
	}
	g := e.node("GlobalAveragePool", name+".pool", []string{x}, "")
	g = e.node("Conv", name+".fc1", []string{g, e.weight(name+".fc1.weight", []int{sq, c, 1, 1}, transpose(w1.Value, c, sq)),
		e.weight(name+".fc1.bias", []int{sq}, b1.Value)}, "", intsAttr("kernel_shape", 1, 1))
	g = e.node("Relu", name+".relu", []string{g}, "")
	g = e.node("Conv", name+".fc2", []string{g, e.weight(name+".fc2.weight", []int{c, sq, 1, 1}, transpose(w2.Value, sq, c)),
		e.weight(name+".fc2.bias", []int{c}, b2.Value)}, "", intsAttr("kernel_shape", 1, 1))
	g = e.node("HardSigmoid", name+".gate", []string{g}, "", floatAttr("alpha", 1.0/6), floatAttr("beta", 0.5))
	return e.node("Mul", name, []string{x, g}, ""), nil
}
