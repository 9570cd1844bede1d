package onnx

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// graph builds small ONNX models for tests.
type graph struct {
	opset int64
	in    []int64 // input dims; 0 is symbolic
	nodes []*onnxpb.NodeProto
	inits []*onnxpb.TensorProto
	out   string
}

// tinyGraph is the smallest valid classifier: global average pool of the
// image, a 1×1 convolution to 10 channels, flatten.
func tinyGraph() *graph {
	g := &graph{opset: 13, in: []int64{0, 1, 28, 28}, out: "y"}
	g.init("w", []int64{10, 1, 1, 1}, make([]float32, 10)...)
	g.node("GlobalAveragePool", "pool", []string{"x"}, "p")
	g.node("Conv", "fc", []string{"p", "w"}, "c")
	g.node("Flatten", "flat", []string{"c"}, "y")
	return g
}

func (g *graph) node(op, name string, in []string, out string, attrs ...*onnxpb.AttributeProto) *graph {
	g.nodes = append(g.nodes, &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(name), Input: in, Output: []string{out}, Attribute: attrs})
	return g
}

func (g *graph) init(name string, dims []int64, vals ...float32) {
	g.inits = append(g.inits, &onnxpb.TensorProto{Name: proto.String(name), Dims: dims, DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), FloatData: vals})
}

func (g *graph) bytes(t testing.TB) []byte {
	t.Helper()
	dims := []*onnxpb.TensorShapeProto_Dimension{}
	for _, d := range g.in {
		if d == 0 {
			dims = append(dims, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}})
		} else {
			dims = append(dims, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
		}
	}
	in := &onnxpb.ValueInfoProto{Name: proto.String("x"), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(1), Shape: &onnxpb.TensorShapeProto{Dim: dims}}}}}
	m := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(7),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(g.opset)}},
		Graph: &onnxpb.GraphProto{Name: proto.String("test"), Node: g.nodes, Initializer: g.inits,
			Input: []*onnxpb.ValueInfoProto{in}, Output: []*onnxpb.ValueInfoProto{{Name: proto.String(g.out)}}},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ints(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func str(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(v)}
}

func TestTinyGraphLoads(t *testing.T) {
	m, err := Decode(tinyGraph().bytes(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := m.Predict(make([]float32, 3*modelfile.Pixels), 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range p { // zero weights: uniform probabilities
		if math.Abs(float64(v)-0.1) > 1e-6 {
			t.Fatalf("probability %v, want 0.1", v)
		}
	}
	if _, err := m.Predict(make([]float32, 5), 1); err == nil {
		t.Error("Predict accepted 5 values for one image")
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		graph func() *graph
		want  []string // substrings of the error
	}{
		{"unsupported operator", func() *graph {
			g := tinyGraph()
			g.nodes[0] = &onnxpb.NodeProto{OpType: proto.String("Tanh"), Name: proto.String("my_tanh"), Input: []string{"x"}, Output: []string{"p"}}
			return g
		}, []string{"Tanh", "my_tanh", "opset 13", "not supported"}},
		{"opset too old", func() *graph { g := tinyGraph(); g.opset = 11; return g }, []string{"opset 11"}},
		{"opset too new", func() *graph { g := tinyGraph(); g.opset = 19; return g }, []string{"opset 19"}},
		{"wrong image size", func() *graph { g := tinyGraph(); g.in = []int64{0, 1, 32, 32}; return g }, []string{"32 pixels"}},
		{"wrong channels", func() *graph { g := tinyGraph(); g.in = []int64{0, 4, 28, 28}; return g }, []string{"4 channels"}},
		{"unsupported attribute value", func() *graph {
			g := tinyGraph()
			g.nodes[1].Attribute = []*onnxpb.AttributeProto{str("auto_pad", "SIDEWAYS")}
			return g
		}, []string{"fc", "auto_pad", "SIDEWAYS"}},
		{"unknown attribute", func() *graph {
			g := tinyGraph()
			g.nodes[1].Attribute = []*onnxpb.AttributeProto{ints("frobnicate", 1)}
			return g
		}, []string{"frobnicate"}},
		{"3-D convolution", func() *graph {
			g := tinyGraph()
			g.nodes[1].Attribute = []*onnxpb.AttributeProto{ints("strides", 1, 1, 1)}
			return g
		}, []string{"strides"}},
		{"undefined input", func() *graph { g := tinyGraph(); g.nodes[1].Input[0] = "nowhere"; return g }, []string{"nowhere"}},
		{"missing output", func() *graph { g := tinyGraph(); g.out = "zzz"; return g }, []string{"zzz"}},
		{"class count", func() *graph {
			g := tinyGraph()
			g.inits[0] = &onnxpb.TensorProto{Name: proto.String("w"), Dims: []int64{7, 1, 1, 1}, DataType: proto.Int32(1), FloatData: make([]float32, 7)}
			return g
		}, []string{"7 scores", "10 class names"}},
		{"short weights", func() *graph {
			g := tinyGraph()
			g.inits[0].FloatData = g.inits[0].FloatData[:3]
			return g
		}, []string{"\"w\"", "3 values"}},
		{"external data", func() *graph {
			g := tinyGraph()
			g.inits[0].DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
			return g
		}, []string{"external"}},
		{"softmax over width", func() *graph {
			g := tinyGraph()
			g.node("Softmax", "sm", []string{"c"}, "s", &onnxpb.AttributeProto{Name: proto.String("axis"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(3)})
			g.out = "s"
			return g
		}, []string{"sm", "axis=3"}},
		{"gather on images", func() *graph {
			g := tinyGraph()
			g.init("i", []int64{}, 0)
			g.node("Gather", "g", []string{"y", "i"}, "z")
			g.out = "z"
			return g
		}, []string{"Gather", "constant"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.graph().bytes(t), Options{})
			if err == nil {
				t.Fatal("loaded without error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDamagedFiles(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(fixtureDir, "ops13.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"text", []byte("this is not a model\n")},
		{"truncated to 1 byte", good[:1]},
		{"truncated to half", good[:len(good)/2]},
		{"truncated by 1 byte", good[:len(good)-1]},
		{"safetensors header", []byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decode(tt.data, Options{}); err == nil {
				t.Error("damaged file loaded without error")
			}
		})
	}
}

func TestSidecarAndOptions(t *testing.T) {
	data := tinyGraph().bytes(t)
	classes := `["a","b","c","d","e","f","g","h","i","j"]`
	tests := []struct {
		name    string
		sidecar string // "" for none
		opts    Options
		want    modelfile.Info
		wantErr string
	}{
		{"defaults", "", Options{}, modelfile.Info{Name: modelfile.DefaultName, Mean: modelfile.DefaultMean, Std: modelfile.DefaultStd, Classes: modelfile.FashionClasses}, ""},
		{"sidecar", `{"name":"theirs","classes":` + classes + `,"mean":0.5,"std":0.25,"test_accuracy":0.9}`, Options{},
			modelfile.Info{Name: "theirs", Mean: 0.5, Std: 0.25, Classes: []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}, TestAccuracy: 0.9}, ""},
		{"options win", `{"mean":0.5,"std":0.25}`, Options{Name: "flag", Mean: 0.1, Std: 0.2},
			modelfile.Info{Name: "flag", Mean: 0.1, Std: 0.2, Classes: modelfile.FashionClasses}, ""},
		{"misspelt key", `{"stdev":0.3}`, Options{}, modelfile.Info{}, "stdev"},
		{"not JSON", `mean=0.3`, Options{}, modelfile.Info{}, "sidecar"},
		{"zero std", `{"std":0}`, Options{}, modelfile.Info{}, "std"},
		{"huge std", `{"std":1e38}`, Options{}, modelfile.Info{}, "std 1e+38 is not in"},
		{"mean out of range", `{"mean":-3}`, Options{}, modelfile.Info{}, "mean -3 is not in [0, 1]"},
		{"duplicate classes", `{"classes":["x","x"]}`, Options{}, modelfile.Info{}, "appears twice"},
		{"wrong class count", `{"classes":["x","y","z"]}`, Options{}, modelfile.Info{}, "3 class names"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			var m *Model
			var err error
			if tt.sidecar != "" {
				opts.Sidecar, err = ParseSidecar([]byte(tt.sidecar))
			}
			if err == nil {
				opts.Source = "m.onnx"
				m, err = Decode(data, opts)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := m.Info()
			if got.Name != tt.want.Name || got.Mean != tt.want.Mean || got.Std != tt.want.Std ||
				strings.Join(got.Classes, ",") != strings.Join(tt.want.Classes, ",") || got.TestAccuracy != tt.want.TestAccuracy {
				t.Errorf("Info = %+v, want %+v", got, tt.want)
			}
			if got.Arch != "onnx" || got.Source != "m.onnx" || len(got.SHA256) != 64 {
				t.Errorf("Arch %q Source %q SHA256 %q", got.Arch, got.Source, got.SHA256)
			}
		})
	}
}

// A Reshape written for the batch of one the model was traced with, as
// exporters without dynamic axes leave it, still serves any batch.
func TestFixedBatchReshape(t *testing.T) {
	g := &graph{opset: 13, in: []int64{1, 1, 28, 28}, out: "y"}
	g.inits = append(g.inits, &onnxpb.TensorProto{Name: proto.String("shape"), Dims: []int64{2}, DataType: proto.Int32(int32(onnxpb.TensorProto_INT64)), Int64Data: []int64{1, -1}})
	g.init("w", []int64{784, 10}, make([]float32, 7840)...)
	for i := range 10 {
		g.inits[1].FloatData[i*10+i] = 1 // score j = pixel j of the first row
	}
	g.node("Reshape", "r", []string{"x", "shape"}, "f")
	g.node("MatMul", "mm", []string{"f", "w"}, "y")
	m, err := Decode(g.bytes(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	x := randomImages(3)
	got, err := m.Logits(x, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		for j := range 10 {
			if got[i*10+j] != x[i*modelfile.Pixels+j] {
				t.Fatalf("image %d score %d = %v, want pixel %v", i, j, got[i*10+j], x[i*modelfile.Pixels+j])
			}
		}
	}
}

func TestConcurrentPredict(t *testing.T) {
	m, err := decodeFile(filepath.Join(fixtureDir, "ops13.onnx"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 7
	x := randomImages(n)
	want, err := m.Predict(x, n)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				k := 1 + g%n // different batch sizes share the pool
				got, err := m.Predict(x[:k*modelfile.Pixels], k)
				if err != nil {
					errs <- err.Error()
					return
				}
				if d := maxDiff(got, want[:k*10]); d > 1e-6 {
					errs <- "concurrent results differ"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
