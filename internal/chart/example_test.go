package chart

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/eval"
)

// fashionClasses are the Fashion-MNIST labels, repeated here so the tests do
// not depend on the model package.
var fashionClasses = []string{
	"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
	"Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
}

// sampleConfusion returns a confusion matrix shaped like that of a ~94%
// Fashion-MNIST model: 1000 samples per class, with the usual
// shirt/T-shirt/pullover/coat confusions.
func sampleConfusion() *eval.Confusion {
	c := eval.NewConfusion(fashionClasses)
	c.Counts = [][]int{
		{891, 0, 13, 11, 2, 0, 78, 0, 5, 0},
		{1, 990, 0, 6, 1, 0, 1, 0, 1, 0},
		{13, 0, 917, 7, 33, 0, 30, 0, 0, 0},
		{9, 3, 8, 946, 17, 0, 16, 0, 1, 0},
		{0, 0, 31, 19, 916, 0, 34, 0, 0, 0},
		{0, 0, 0, 0, 0, 989, 0, 8, 0, 3},
		{82, 1, 39, 20, 52, 0, 800, 0, 6, 0},
		{0, 0, 0, 0, 0, 4, 0, 982, 0, 14},
		{2, 0, 1, 2, 0, 1, 2, 1, 991, 0},
		{0, 0, 0, 0, 0, 4, 0, 25, 0, 971},
	}
	return c
}

// sampleHistory returns a plausible 30-epoch one-cycle training history.
func sampleHistory() []Epoch {
	h := make([]Epoch, 30)
	for i := range h {
		e := float64(i + 1)
		h[i] = Epoch{
			Epoch:     i + 1,
			TrainLoss: 0.55 + 0.9/(e+0.5) - 0.004*e,
			TrainAcc:  0.97 - 0.17/e,
			TestAcc:   0.952 - 0.12/(e*e*0.4+1) + 0.002*float64(i%3-1),
			LR:        0.1 * (1 - e/31),
		}
	}
	return h
}

// saveExample writes a figure rendered by a test to $CHART_EXAMPLE_DIR, if
// set, so that a person can look at every case the tests draw:
//
//	CHART_EXAMPLE_DIR=/tmp/charts go test ./internal/chart
func saveExample(t *testing.T, data []byte) {
	t.Helper()
	dir := os.Getenv("CHART_EXAMPLE_DIR")
	if dir == "" {
		return
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + ".png"
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatalf("saving example: %v", err)
	}
}
