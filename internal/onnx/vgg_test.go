package onnx

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// sharedModels returns the shared reference-model directory (shared/models
// beside the repository), skipping the test when it is absent (CI has it).
func sharedModels(t testing.TB) string {
	t.Helper()
	return filepath.Dir(datatest.SharedPath(t, "models/vgg_w32_fmnist.onnx"))
}

// vggRef is the part of vgg_w32_fmnist.ref.json the tests use.
type vggRef struct {
	TestCorrect int         `json:"test_correct"`
	TestN       int         `json:"test_n"`
	Logits      [][]float32 `json:"first100_logits"`
}

func loadVGG(t testing.TB) (*Model, vggRef) {
	t.Helper()
	dir := sharedModels(t)
	m, err := decodeFile(filepath.Join(dir, "vgg_w32_fmnist.onnx"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "vgg_w32_fmnist.ref.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref vggRef
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	return m, ref
}

// testSet loads the Fashion-MNIST test set from $FASHION_DATA (or the
// shared copy beside the repository), normalised for info.
func testSet(t testing.TB, info modelfile.Info) ([]float32, []uint8, int) {
	t.Helper()
	test := datatest.FashionMNISTTest(t)
	x := make([]float32, len(test.Images.Pix))
	info.Normalize(x, test.Images.Pix)
	return x, test.Labels, test.Images.N
}

func TestVGGMatchesPyTorch(t *testing.T) {
	m, ref := loadVGG(t)
	x, labels, n := testSet(t, m.Info())
	if len(ref.Logits) != 100 {
		t.Fatalf("reference has %d logit rows, want 100", len(ref.Logits))
	}
	logits, err := m.Logits(x[:100*modelfile.Pixels], 100)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i, row := range ref.Logits {
		for j, want := range row {
			worst = math.Max(worst, math.Abs(float64(logits[i*10+j]-want)))
		}
	}
	if worst > 1e-3 {
		t.Errorf("logits of the first 100 images differ from PyTorch's by up to %g, want ≤ 1e-3", worst)
	}
	t.Logf("max |logit − PyTorch| over 100 images: %.2g", worst)
	if testing.Short() {
		t.Skip("full test set skipped in -short mode")
	}

	probs, err := m.Predict(x, n)
	if err != nil {
		t.Fatal(err)
	}
	correct := 0
	for i := range n {
		row := probs[i*10 : (i+1)*10]
		best := 0
		for j, p := range row {
			if p > row[best] {
				best = j
			}
		}
		if best == int(labels[i]) {
			correct++
		}
	}
	if n != ref.TestN || correct < ref.TestCorrect-2 || correct > ref.TestCorrect+2 {
		t.Errorf("%d of %d test images correct; PyTorch had %d of %d (want within 2)", correct, n, ref.TestCorrect, ref.TestN)
	}
	t.Logf("accuracy %d/%d (PyTorch %d)", correct, n, ref.TestCorrect)
}
