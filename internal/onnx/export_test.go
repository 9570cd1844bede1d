package onnx

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/x448/float16"
	"google.golang.org/protobuf/proto"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/nn"
	"github.com/fashion-classifier/fashion/internal/onnx/onnxpb"
	shipped "github.com/fashion-classifier/fashion/model"
)

// randomImages returns n normalised-looking images from a fixed seed.
func randomImages(n int) []float32 {
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, n*modelfile.Pixels)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

func maxDiff(a, b []float32) float64 {
	worst := 0.0
	for i := range a {
		worst = math.Max(worst, math.Abs(float64(a[i]-b[i])))
	}
	return worst
}

// embeddedNet rebuilds the network of the model shipped in the binary.
func embeddedNet(t testing.TB) (*nn.Sequential, modelfile.Meta) {
	t.Helper()
	return netOf(t, shipped.Weights)
}

// netOf rebuilds the network of a model file.
func netOf(t testing.TB, file []byte) (*nn.Sequential, modelfile.Meta) {
	t.Helper()
	d, err := modelfile.Decode(file)
	if err != nil {
		t.Fatal(err)
	}
	a, err := arch.LookupArch(d.Meta.Arch)
	if err != nil {
		t.Fatal(err)
	}
	net := a.Build(rand.New(rand.NewPCG(0, 0)), len(d.Meta.Classes))
	if err := modelfile.Load(net, d.Weights); err != nil {
		t.Fatal(err)
	}
	return net, d.Meta
}

func TestExportRoundTrip(t *testing.T) {
	net, meta := embeddedNet(t)
	mnv3 := arch.MobileNetV3Small(rand.New(rand.NewPCG(3, 4)), 10, arch.Strides224)
	resnet := arch.ResNet(rand.New(rand.NewPCG(3, 4)), 1, 8, 10)
	// Non-trivial batch-norm statistics, so that folding them is checked.
	rng := rand.New(rand.NewPCG(5, 6))
	for _, p := range append(mnv3.Params(), resnet.Params()...) {
		if p.Name == "fc2.weight" || p.Name == "fc2.bias" || p.Name == "fc.weight" {
			// Random features are small; spread the logits over ±2 or so.
			for i := range p.Value {
				p.Value[i] *= 50
			}
		}
		switch p.Name[max(0, len(p.Name)-12):] {
		case "running_mean":
			for i := range p.Value {
				p.Value[i] = float32(rng.NormFloat64() * 0.1)
			}
		case ".running_var":
			for i := range p.Value {
				p.Value[i] = float32(0.5 + rng.Float64())
			}
		}
	}
	// sameSteps: the exported graph compiles to the native program's
	// steps. Not MobileNetV3's: opset 13 has no HardSwish, so the export
	// writes x·HardSigmoid(x), a product step of its own.
	tests := []struct {
		name      string
		net       *nn.Sequential
		meta      ExportMeta
		sameSteps bool
	}{
		{"embedded " + meta.Arch, net, ExportMeta{Name: "embedded", Arch: meta.Arch, Classes: meta.Classes, Mean: meta.Mean, Std: meta.Std, TestAccuracy: meta.TestAccuracy}, true},
		{"random mobilenetv3-small", mnv3, ExportMeta{Name: "mnv3", Arch: "mobilenetv3-small", Classes: modelfile.FashionClasses, Mean: 0.5, Std: 0.25}, false},
		{"random resnet with projection shortcuts", resnet, ExportMeta{Name: "resnet", Arch: "resnet8", Classes: modelfile.FashionClasses, Mean: 0.5, Std: 0.25}, true},
	}
	const n = 33
	x := randomImages(n)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := Export(tt.net, tt.meta)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Decode(data, Options{})
			if err != nil {
				t.Fatal(err)
			}
			info := m.Info()
			if info.Mean != tt.meta.Mean || info.Std != tt.meta.Std || len(info.Classes) != len(tt.meta.Classes) || info.Classes[9] != tt.meta.Classes[9] {
				t.Errorf("metadata round trip: got mean %v std %v classes %q", info.Mean, info.Std, info.Classes)
			}
			got, err := m.Logits(x, n)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.net.Forward(&nn.Tensor{N: n, H: modelfile.Side, W: modelfile.Side, C: 1, Data: x}, false).Data
			if d := maxDiff(got, want); d > 1e-4 {
				t.Errorf("exported model's logits differ from the native network's by %g, want ≤ 1e-4", d)
			} else {
				t.Logf("max |ONNX − native| = %.2g over %d images (max |logit| %.3g)", d, n, maxDiff(want, make([]float32, len(want))))
			}
			if !tt.sameSteps {
				return
			}
			// The same steps and kernels as the native program (residual
			// sums fused into the convolutions alike), in an order that
			// may differ where the graph lists a shortcut after its body.
			native, err := infer.Compile(tt.net, modelfile.Side, modelfile.Side, 1)
			if err != nil {
				t.Fatal(err)
			}
			ours, theirs := native.Describe(), m.Program().Describe()
			slices.Sort(ours)
			slices.Sort(theirs)
			if !slices.Equal(ours, theirs) {
				t.Errorf("ONNX program\n%s\nnative program\n%s", strings.Join(theirs, "\n"), strings.Join(ours, "\n"))
			}
		})
	}
}

func TestExportMatchesClassifier(t *testing.T) {
	net, meta := embeddedNet(t)
	data, err := Export(net, ExportMeta{Arch: meta.Arch, Classes: meta.Classes, Mean: meta.Mean, Std: meta.Std, Temperature: meta.Temperature})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Info().Precision; got != modelfile.PrecisionFloat32 {
		t.Errorf("ONNX model's precision is %q, want %q", got, modelfile.PrecisionFloat32)
	}
	if got := m.Info().Storage; got != modelfile.StorageF32 {
		t.Errorf("ONNX model's storage is %q, want %q", got, modelfile.StorageF32)
	}
	if got := m.Info().Temperature; got != meta.Temperature {
		t.Errorf("ONNX model's temperature is %v, want the exported file's %v", got, meta.Temperature)
	}
	native, err := modelfile.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	x := randomImages(8)
	got, err := m.Predict(x, 8)
	if err != nil {
		t.Fatal(err)
	}
	want, err := native.Predict(x, 8)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(got, want); d > 1e-5 {
		t.Errorf("probabilities differ from the embedded Classifier's by %g", d)
	}
}

// TestFloat16Initializers: an ONNX model whose weights are FLOAT16
// (the exported model with every float initializer rounded to half
// precision) loads, says storage f16 and answers like the float32 model
// to within half precision's rounding.
func TestFloat16Initializers(t *testing.T) {
	net, meta := embeddedNet(t)
	data, err := Export(net, ExportMeta{Arch: meta.Arch, Classes: meta.Classes, Mean: meta.Mean, Std: meta.Std})
	if err != nil {
		t.Fatal(err)
	}
	var mp onnxpb.ModelProto
	if err := proto.Unmarshal(data, &mp); err != nil {
		t.Fatal(err)
	}
	converted := 0
	for _, init := range mp.GetGraph().GetInitializer() {
		if onnxpb.TensorProto_DataType(init.GetDataType()) != onnxpb.TensorProto_FLOAT {
			continue
		}
		var vals []float32
		if init.RawData != nil {
			for k := 0; k+4 <= len(init.RawData); k += 4 {
				vals = append(vals, math.Float32frombits(binary.LittleEndian.Uint32(init.RawData[k:])))
			}
		} else {
			vals = init.GetFloatData()
		}
		raw := make([]byte, 0, 2*len(vals))
		for _, v := range vals {
			raw = binary.LittleEndian.AppendUint16(raw, float16.Fromfloat32(v).Bits())
		}
		init.DataType, init.RawData, init.FloatData = proto.Int32(int32(onnxpb.TensorProto_FLOAT16)), raw, nil
		converted++
	}
	if converted == 0 {
		t.Fatal("the exported model has no FLOAT initializers to convert")
	}
	half, err := proto.Marshal(&mp)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(half, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Info().Storage; got != modelfile.StorageF16 {
		t.Errorf("storage %q, want %q", got, modelfile.StorageF16)
	}
	full, err := Decode(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	x := randomImages(8)
	got, err := m.Predict(x, 8)
	if err != nil {
		t.Fatal(err)
	}
	want, err := full.Predict(x, 8)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(got, want); d > 0.02 || d == 0 {
		t.Errorf("FLOAT16 weights' probabilities differ from FLOAT's by %g, want a rounding difference in (0, 0.02]", d)
	}
}

func TestExportRejects(t *testing.T) {
	net, meta := embeddedNet(t)
	if _, err := Export(net, ExportMeta{Classes: meta.Classes[:5]}); err == nil {
		t.Error("export with 5 class names for a 10-class network succeeded")
	}
	odd := nn.NewSequential(&nn.Flatten{}, nn.NewConv2D(rand.New(rand.NewPCG(0, 0)), 1, 2, 3, 1, 1, false))
	if _, err := Export(odd, ExportMeta{Classes: meta.Classes}); err == nil {
		t.Error("export of a convolution after flattening succeeded")
	}
}
