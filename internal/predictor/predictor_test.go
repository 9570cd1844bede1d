package predictor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/safefile"
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
		{"embedded", "", Options{}, "vgg", "embedded", modelfile.DefaultName, modelfile.DefaultMean, "T-shirt/top"},
		{"embedded renamed", "", Options{Name: "v1"}, "vgg", "embedded", "v1", modelfile.DefaultMean, "T-shirt/top"},
		{"safetensors", native, Options{}, "vgg", native, modelfile.DefaultName, modelfile.DefaultMean, "T-shirt/top"},
		{"safetensors without extension", nativeNoExt, Options{Name: "n"}, "vgg", nativeNoExt, "n", modelfile.DefaultMean, "T-shirt/top"},
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
