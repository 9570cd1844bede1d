package onnx

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// fixtureDir holds the models exported by tools/onnx/export_fixtures.py.
var fixtureDir = filepath.Join("..", "..", "testdata", "onnx")

// decodeFile reads and compiles the ONNX model at path (reading a sidecar
// is package predictor's job).
func decodeFile(path string, opts Options) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	opts.Source = path
	return Decode(data, opts)
}

// openFixture loads testdata/onnx/<name>.onnx, or <name>.onnx.gz: the
// MobileNetV3 fixture is stored compressed to keep the repository small.
func openFixture(t *testing.T, name string) *Model {
	t.Helper()
	path := filepath.Join(fixtureDir, name+".onnx")
	if _, err := os.Stat(path + ".gz"); err != nil {
		m, err := decodeFile(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	f, err := os.Open(path + ".gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// expected is a fixture's <name>.expected.json.
type expected struct {
	Inputs  []float32   `json:"inputs"`
	Outputs [][]float32 `json:"outputs"`
}

func TestPyTorchFixtures(t *testing.T) {
	tests := []struct {
		name  string
		probs bool // the graph ends in Softmax
		// steps bounds the compiled program's length: it fails when the
		// batch-norm and activation folding stops working.
		steps int
	}{
		{"mobilenet_v3_small", false, 80},
		{"ops13", false, 30},
		{"ops17_softmax_rgb", true, 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := openFixture(t, tt.name)
			data, err := os.ReadFile(filepath.Join(fixtureDir, tt.name+".expected.json"))
			if err != nil {
				t.Fatal(err)
			}
			var want expected
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			n := len(want.Outputs)
			if n == 0 || len(want.Inputs) != n*modelfile.Pixels {
				t.Fatalf("fixture has %d inputs for %d outputs", len(want.Inputs), n)
			}
			if got := m.Program().Steps(); got > tt.steps {
				t.Errorf("program has %d steps, want at most %d", got, tt.steps)
			}
			if m.Program().Probs() != tt.probs {
				t.Errorf("graph ends in softmax: got %v, want %v", m.Program().Probs(), tt.probs)
			}
			got, err := m.Logits(want.Inputs, n)
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for i, row := range want.Outputs {
				for j, w := range row {
					worst = math.Max(worst, math.Abs(float64(got[i*len(row)+j]-w)))
				}
			}
			if worst > 1e-3 {
				t.Errorf("outputs differ from PyTorch's by up to %g, want ≤ 1e-3", worst)
			}
			t.Logf("%d steps, max |output − PyTorch| = %.2g", m.Program().Steps(), worst)

			// One image at a time gives the same answers as the batch.
			one, err := m.Logits(want.Inputs[modelfile.Pixels:2*modelfile.Pixels], 1)
			if err != nil {
				t.Fatal(err)
			}
			for j, v := range one {
				if d := math.Abs(float64(v - got[len(one)+j])); d > 1e-5 {
					t.Fatalf("image 1 alone gives output %d = %v, in a batch %v", j, v, got[len(one)+j])
				}
			}
		})
	}
}
