package onnx

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// sharedModels finds the shared model directory: $FASHION_MODELS_DIR, or
// shared/models beside the repository (as on the developers' machines and
// in CI).
func sharedModels(t testing.TB) string {
	t.Helper()
	dir := sharedModelsIfAny()
	if dir == "" {
		t.Skip("shared models not found: set FASHION_MODELS_DIR or put shared/ beside the repository")
	}
	return dir
}

// sharedModelsIfAny is sharedModels without skipping: "" when absent.
func sharedModelsIfAny() string {
	for _, dir := range []string{os.Getenv("FASHION_MODELS_DIR"), filepath.Join("..", "..", "..", "shared", "models")} {
		if dir == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "vgg_w32_fmnist.onnx")); err == nil {
			return dir
		}
	}
	return ""
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
	dir := os.Getenv("FASHION_DATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "data", "fashion-mnist")
	}
	test, err := idx.LoadTest(dir)
	if err != nil {
		t.Skipf("Fashion-MNIST test set not available (set FASHION_DATA): %v", err)
	}
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
