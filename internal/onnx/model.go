package onnx

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Opset range the loader implements: what PyTorch's exporter writes for
// image classifiers from version 1.10 on.
const (
	MinOpset = 13
	MaxOpset = 18
)

// maxChunk bounds how many images one run of the program takes; fewer are
// taken when one image needs much memory (see chunkBudget).
const maxChunk = 256

// chunkBudget bounds the buffer memory of one run, in float32s.
const chunkBudget = 1 << 26

// Options overrides what the model file says about the model; zero fields
// leave it alone.
type Options struct {
	Name      string
	Classes   []string
	Mean, Std float32
	// Sidecar is what the model's sidecar file says, if it has one: it
	// overrides the model's metadata, and the fields above override it.
	Sidecar *Sidecar
	// Source is the file the model came from, for Info.Source; default
	// "memory".
	Source string
	// Int8 is set for a quantized model's graph (from an int8 model file,
	// see modelfile.ONNXInt8File).
	Int8 *Int8
}

// Int8 is what an int8 model file adds to its ONNX graph.
type Int8 struct {
	// Dropped names the float initializers the graph holds without
	// values (their names, types and shapes only): they compile as
	// zeros, and Apply must replace every layer that reads them.
	Dropped []string
	// Apply swaps the file's int8 layers into the compiled program.
	Apply func(*infer.Program) (*infer.Program, error)
	// SHA256 is the checksum of the int8 file, for Info.SHA256.
	SHA256 string
}

// Sidecar is the JSON file next to a model (model.onnx.json for
// model.onnx) that says what an ONNX file cannot: the class names and the
// input normalisation the model was trained with.
type Sidecar struct {
	Name         string   `json:"name,omitempty"`
	Classes      []string `json:"classes,omitempty"`
	Mean         *float32 `json:"mean,omitempty"`
	Std          *float32 `json:"std,omitempty"`
	TestAccuracy float64  `json:"test_accuracy,omitempty"`
	Temperature  float64  `json:"temperature,omitempty"`
}

// Model is an ONNX image classifier compiled to an inference program
// (package infer, the same kernels as our own models). It is safe for
// concurrent use: its Predictor gives each concurrent call its own
// buffers and shares only the immutable compiled program.
type Model struct {
	info modelfile.Info
	*infer.Predictor
}

// ParseSidecar parses a model's sidecar JSON (see Sidecar). Unknown keys
// are refused: a misspelt one would otherwise silently leave the defaults
// in place.
func ParseSidecar(data []byte) (*Sidecar, error) {
	var s Sidecar
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("sidecar: %w", err)
	}
	return &s, nil
}

// Decode compiles an ONNX model from its bytes; opts (and else the model's
// metadata, and else the Fashion-MNIST defaults) give its class names and
// normalisation, which are checked (modelfile.CheckClasses,
// modelfile.CheckNormalization) before the graph is compiled. Files are
// opened by package predictor, which reads the sidecar.
func Decode(data []byte, opts Options) (*Model, error) {
	var mp onnxpb.ModelProto
	if err := proto.Unmarshal(data, &mp); err != nil {
		return nil, fmt.Errorf("not an ONNX model (protobuf decoding failed): %w", err)
	}
	if mp.GetGraph() == nil {
		return nil, fmt.Errorf("not an ONNX model: no graph")
	}
	opset := 0
	for _, o := range mp.GetOpsetImport() {
		if d := o.GetDomain(); d == "" || d == "ai.onnx" {
			opset = int(min(max(o.GetVersion(), -1), 1<<20))
		}
	}
	if opset == 0 {
		return nil, fmt.Errorf("model imports no version of the standard operator set")
	}
	if opset < MinOpset || opset > MaxOpset {
		return nil, fmt.Errorf("model uses opset %d; supported are %d to %d (re-export with opset_version=%d)", opset, MinOpset, MaxOpset, MaxOpset)
	}
	info, err := describe(&mp, opts)
	if err != nil {
		return nil, err
	}
	var dropped []string
	if opts.Int8 != nil {
		dropped = opts.Int8.Dropped
	}
	prog, err := compile(mp.GetGraph(), opset, dropped)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	info.SHA256 = hex.EncodeToString(sum[:])
	if opts.Int8 != nil {
		if prog, err = opts.Int8.Apply(prog); err != nil {
			return nil, err
		}
		info.Precision, info.SHA256 = modelfile.PrecisionInt8, opts.Int8.SHA256
	}
	if prog.OutSize() != len(info.Classes) {
		return nil, fmt.Errorf("model outputs %d scores per image, but %d class names are configured", prog.OutSize(), len(info.Classes))
	}
	m := &Model{info: info, Predictor: infer.NewPredictor(prog)}
	m.Predictor.SetTemperature(info.Temperature)
	return m, nil
}

// describe gathers the model's Info from opts, the sidecar, the model's
// metadata_props (as Export writes them) and the defaults, in that order.
func describe(mp *onnxpb.ModelProto, opts Options) (modelfile.Info, error) {
	info := modelfile.Info{Name: modelfile.DefaultName, Arch: "onnx", Classes: modelfile.FashionClasses,
		Mean: modelfile.DefaultMean, Std: modelfile.DefaultStd, Source: "memory", Precision: modelfile.PrecisionFloat32,
		Storage: modelfile.StorageF32}
	if opts.Source != "" {
		info.Source = opts.Source
	}
	for _, p := range mp.GetMetadataProps() {
		switch p.GetKey() {
		case "classes":
			cl, err := modelfile.ParseClasses(p.GetValue())
			if err != nil {
				return info, fmt.Errorf("metadata \"classes\": %w", err)
			}
			info.Classes = cl
		case "mean", "std":
			v, err := strconv.ParseFloat(p.GetValue(), 32)
			if err != nil {
				return info, fmt.Errorf("metadata %q is not a number: %q", p.GetKey(), p.GetValue())
			}
			if p.GetKey() == "mean" {
				info.Mean = float32(v)
			} else {
				info.Std = float32(v)
			}
		case "test_accuracy":
			info.TestAccuracy, _ = strconv.ParseFloat(p.GetValue(), 64)
		case "temperature":
			t, err := modelfile.ParseTemperature(p.GetValue())
			if err != nil {
				return info, err
			}
			info.Temperature = t
		}
	}
	if side := opts.Sidecar; side != nil {
		if side.Name != "" {
			info.Name = side.Name
		}
		if side.Classes != nil {
			info.Classes = side.Classes
		}
		if side.Mean != nil {
			info.Mean = *side.Mean
		}
		if side.Std != nil {
			info.Std = *side.Std
		}
		if side.TestAccuracy > 0 {
			info.TestAccuracy = side.TestAccuracy
		}
		if side.Temperature != 0 {
			t, err := modelfile.ParseTemperature(strconv.FormatFloat(side.Temperature, 'g', -1, 64))
			if err != nil {
				return info, fmt.Errorf("sidecar: %w", err)
			}
			info.Temperature = t
		}
	}
	if opts.Name != "" {
		info.Name = opts.Name
	}
	if opts.Classes != nil {
		info.Classes = opts.Classes
	}
	if opts.Mean != 0 {
		info.Mean = opts.Mean
	}
	if opts.Std != 0 {
		info.Std = opts.Std
	}
	if err := modelfile.CheckClasses(info.Classes); err != nil {
		return info, err
	}
	if err := modelfile.CheckNormalization(info.Mean, info.Std); err != nil {
		return info, err
	}
	half, full := 0, 0 // float initializers stored as FLOAT16, and as FLOAT or DOUBLE
	for _, t := range mp.GetGraph().GetInitializer() {
		if dt := onnxpb.TensorProto_DataType(t.GetDataType()); dt == onnxpb.TensorProto_FLOAT || dt == onnxpb.TensorProto_FLOAT16 || dt == onnxpb.TensorProto_DOUBLE {
			n := 1
			for _, d := range t.GetDims() {
				n *= int(d)
			}
			info.Params += n
			if dt == onnxpb.TensorProto_FLOAT16 {
				half++
			} else {
				full++
			}
		}
	}
	if half > 0 && full == 0 {
		info.Storage = modelfile.StorageF16
	}
	return info, nil
}

// Info describes the model. Params counts the floating-point values of its
// weights.
func (m *Model) Info() modelfile.Info { return m.info }

// MACs is the number of multiply-adds per image of the model's
// convolutions and matrix products (twice that is its FLOPs per image).
func (m *Model) MACs() int { return m.Program().MACs() }

// DropInitializers returns the ONNX model data with the values of the
// named float initializers removed (names, types and shapes kept): the
// graph of an int8 file, whose int8 layers replace the ones reading them
// (see Int8).
func DropInitializers(data []byte, names []string) ([]byte, error) {
	var mp onnxpb.ModelProto
	if err := proto.Unmarshal(data, &mp); err != nil {
		return nil, fmt.Errorf("not an ONNX model (protobuf decoding failed): %w", err)
	}
	left := map[string]bool{}
	for _, n := range names {
		left[n] = true
	}
	for _, t := range mp.GetGraph().GetInitializer() {
		if !left[t.GetName()] {
			continue
		}
		if onnxpb.TensorProto_DataType(t.GetDataType()) != onnxpb.TensorProto_FLOAT {
			return nil, fmt.Errorf("initializer %q is not FLOAT", t.GetName())
		}
		delete(left, t.GetName())
		t.RawData, t.FloatData = nil, nil
	}
	for n := range left {
		return nil, fmt.Errorf("the graph has no initializer %q", n)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(&mp)
}

// MarshalSidecar encodes s as the indented JSON that ParseSidecar reads.
func MarshalSidecar(s Sidecar) ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding sidecar: %w", err)
	}
	return append(b, '\n'), nil
}
