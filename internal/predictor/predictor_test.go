package predictor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/onnx"
	"github.com/fashion-classifier/fashion/internal/safefile"
	"github.com/fashion-classifier/fashion/internal/safetensors"
	shipped "github.com/fashion-classifier/fashion/model"
)

// fixture is a small ONNX model exported by tools/onnx (ten outputs).
var fixture = filepath.Join("..", "..", "testdata", "onnx", "ops13.onnx")

func write(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpen(t *testing.T) {
	onnxData, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	native := write(t, filepath.Join(dir, "m.safetensors"), shipped.Weights)
	// The format comes from the content, not the name.
	nativeNoExt := write(t, filepath.Join(dir, "model"), shipped.Weights)
	plainONNX := write(t, filepath.Join(dir, "plain.onnx"), onnxData)
	onnxNoExt := write(t, filepath.Join(dir, "graph.bin"), onnxData)
	withSidecar := write(t, filepath.Join(dir, "side.onnx"), onnxData)
	write(t, withSidecar+".json", []byte(`{"name":"theirs","classes":["a","b","c","d","e","f","g","h","i","j"],"mean":0.5,"std":0.25}`))
	tests := []struct {
		name       string
		path       string
		opts       Options
		arch, src  string
		modelName  string
		mean       float32
		firstClass string
	}{
		{"embedded", "", Options{}, "resnet20", "embedded", modelfile.DefaultName, modelfile.DefaultMean, "T-shirt/top"},
		{"embedded renamed", "", Options{Name: "v1"}, "resnet20", "embedded", "v1", modelfile.DefaultMean, "T-shirt/top"},
		{"safetensors", native, Options{}, "resnet20", native, modelfile.DefaultName, modelfile.DefaultMean, "T-shirt/top"},
		{"safetensors without extension", nativeNoExt, Options{Name: "n"}, "resnet20", nativeNoExt, "n", modelfile.DefaultMean, "T-shirt/top"},
		{"onnx", plainONNX, Options{}, "onnx", plainONNX, modelfile.DefaultName, modelfile.DefaultMean, "T-shirt/top"},
		{"onnx without extension", onnxNoExt, Options{}, "onnx", onnxNoExt, modelfile.DefaultName, modelfile.DefaultMean, "T-shirt/top"},
		{"onnx sidecar", withSidecar, Options{}, "onnx", withSidecar, "theirs", 0.5, "a"},
		{"options over sidecar", withSidecar, Options{Name: "mine", Mean: 0.1, Classes: strings.Split("k,l,m,n,o,p,q,r,s,t", ",")}, "onnx", withSidecar, "mine", 0.1, "k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Open(context.Background(), tt.path, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			info := p.Info()
			if info.Arch != tt.arch || info.Source != tt.src || info.Name != tt.modelName || info.Mean != tt.mean || info.Classes[0] != tt.firstClass {
				t.Errorf("Info = %+v, want arch %s, source %s, name %s, mean %v, first class %s", info, tt.arch, tt.src, tt.modelName, tt.mean, tt.firstClass)
			}
			probs, err := p.Predict(make([]float32, 2*modelfile.Pixels), 2)
			if err != nil || len(probs) != 2*len(info.Classes) {
				t.Errorf("Predict: %d values, %v", len(probs), err)
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	onnxData, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	native := write(t, filepath.Join(dir, "m.safetensors"), shipped.Weights)
	badSide := write(t, filepath.Join(dir, "bad.onnx"), onnxData)
	write(t, badSide+".json", []byte(`{"std":1e38}`))
	dirSide := write(t, filepath.Join(dir, "dirside.onnx"), onnxData)
	if err := os.Mkdir(dirSide+".json", 0o755); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		path string
		opts Options
		is   error
		want string
	}{
		{"empty file", nil, write(t, filepath.Join(dir, "empty"), nil), Options{}, nil, "not a safetensors model file; as ONNX"},
		{"text", nil, write(t, filepath.Join(dir, "text.onnx"), []byte("hello, world")), Options{}, nil, "not a safetensors model file; as ONNX"},
		{"over the cap", nil, native, Options{MaxBytes: 1000}, safefile.ErrTooLarge, "more than the cap of 1000"},
		{"directory", nil, dir, Options{}, safefile.ErrNotRegular, "a directory"},
		{"missing", nil, filepath.Join(dir, "nope"), Options{}, os.ErrNotExist, "reading model"},
		{"ONNX options for our file", nil, native, Options{Std: 0.5}, nil, "apply to ONNX models; " + native + " records its own"},
		{"ONNX options for the embedded model", nil, "", Options{Classes: []string{"a", "b"}}, nil, "the embedded model records its own"},
		{"implausible sidecar", nil, badSide, Options{}, nil, "std 1e+38 is not in"},
		{"implausible option", nil, filepath.Join("..", "..", "testdata", "onnx", "ops13.onnx"), Options{Mean: 7}, nil, "mean 7 is not in [0, 1]"},
		{"sidecar not a file", nil, dirSide, Options{}, safefile.ErrNotRegular, "reading sidecar"},
		{"cancelled", cancelled, native, Options{}, context.Canceled, "reading model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			p, err := Open(ctx, tt.path, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("Open error = %v, want one mentioning %q (is %v)", err, tt.want, tt.is)
			}
			if p != nil {
				t.Errorf("Open returned a model with its error")
			}
		})
	}
}

// TestOpenQuantizedONNX quantizes an ONNX model (calibrated on synthetic
// inputs) into an int8 file as fashion quantize writes it, opens it, and
// checks that it computes exactly what the quantized program does, and
// that damaged files are refused with errors that say why.
func TestOpenQuantizedONNX(t *testing.T) {
	ctx := context.Background()
	data, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Open(ctx, fixture, Options{})
	if err != nil {
		t.Fatal(err)
	}
	prog := p.(*onnx.Model).Program()
	n := 8
	x := make([]float32, n*modelfile.Pixels)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)/5)) * 1.5
	}
	ranges, err := prog.Calibrate(x, n, 4)
	if err != nil {
		t.Fatal(err)
	}
	all, err := prog.QuantizeWeights(ranges)
	if err != nil {
		t.Fatal(err)
	}
	layers := map[int]infer.Int8Layer{}
	var dropped []string
	for i, l := range all {
		layers[i] = l
		if w := prog.Int8Weights()[i]; w != "" && !slices.Contains(dropped, w) {
			dropped = append(dropped, w)
		}
	}
	if len(layers) == 0 || len(dropped) == 0 {
		t.Fatalf("fixture has %d quantizable layers, %d named weights", len(layers), len(dropped))
	}
	qprog, err := prog.WithInt8(all, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := infer.NewPredictor(qprog).Predict(x, n)
	if err != nil {
		t.Fatal(err)
	}
	graph, err := onnx.DropInitializers(data, dropped)
	if err != nil {
		t.Fatal(err)
	}
	if len(graph) >= len(data) {
		t.Errorf("graph without the int8 layers' weights is %d bytes, with them %d", len(graph), len(data))
	}
	dir := t.TempDir()
	save := func(name string, f *safetensors.File) string {
		path := filepath.Join(dir, name)
		if err := safetensors.WriteFile(path, f); err != nil {
			t.Fatal(err)
		}
		return path
	}
	info := p.Info()
	good := save("q.safetensors", modelfile.ONNXInt8File(info, graph, layers, dropped, "synthetic"))
	q, err := Open(ctx, good, Options{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(good)
	sum := sha256.Sum256(raw)
	if qi := q.Info(); qi.Precision != modelfile.PrecisionInt8 || qi.Arch != "onnx" || qi.SHA256 != hex.EncodeToString(sum[:]) || qi.Source != good {
		t.Errorf("info %+v", qi)
	}
	got, err := q.Predict(x, n)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("the int8 file's probabilities differ from the quantized program's")
	}

	without := func(i int) map[int]infer.Int8Layer {
		m := maps.Clone(layers)
		delete(m, i)
		return m
	}
	for _, tc := range []struct {
		name, want string
		f          *safetensors.File
	}{
		{"weights not left out", "no values", modelfile.ONNXInt8File(info, data, layers, dropped, "x")},
		{"left out but not in the graph", "no initializer", modelfile.ONNXInt8File(info, graph, layers, append(slices.Clone(dropped), "nope"), "x")},
		{"left out weights of a float32 layer", "int8 layer", modelfile.ONNXInt8File(info, graph, without(0), dropped, "x")},
		{"no graph", "lacks its graph", func() *safetensors.File {
			f := modelfile.ONNXInt8File(info, graph, layers, dropped, "x")
			f.Tensors = f.Tensors[1:]
			return f
		}()},
		{"extra tensor", "besides", func() *safetensors.File {
			f := modelfile.ONNXInt8File(info, graph, layers, dropped, "x")
			f.Tensors = append(f.Tensors, safetensors.Tensor{Name: "w", Shape: []int{1}, Data: []float32{1}})
			return f
		}()},
		{"float32 precision", "precision", func() *safetensors.File {
			f := modelfile.ONNXInt8File(info, graph, layers, nil, "x")
			f.Metadata["precision"] = modelfile.PrecisionFloat32
			return f
		}()},
		{"not a graph", "quantized ONNX model", modelfile.ONNXInt8File(info, []byte("not protobuf \xff\xff"), layers, dropped, "x")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(ctx, save(strings.ReplaceAll(tc.name, " ", "_"), tc.f), Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
