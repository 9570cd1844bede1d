package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/fashion-classifier/fashion/internal/datatest"
)

func TestEvalJSONAndConfusionPNG(t *testing.T) {
	dir := datatest.FashionMNISTDir(t)
	conf := filepath.Join(t.TempDir(), "confusion.png")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"eval", "-data", dir, "-limit", "500", "-json", "-confusion", conf}, &out, &errb); code != 0 {
		t.Fatalf("eval exited %d: %s", code, errb.String())
	}
	var rep struct {
		Accuracy float64 `json:"accuracy"`
		N        int     `json:"n"`
		PerClass []struct {
			Class     string  `json:"class"`
			Precision float64 `json:"precision"`
		} `json:"per_class"`
		Model struct {
			Name string `json:"name"`
		} `json:"model"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("eval -json printed %q: %v", out.String(), err)
	}
	if rep.N != 500 || len(rep.PerClass) != 10 || rep.Accuracy <= 0.5 || rep.Model.Name != "fashion-mnist" {
		t.Errorf("unexpected report: %+v", rep)
	}
	f, err := os.Open(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("confusion matrix is not a PNG: %v", err)
	}
}

func TestEvalRejectsBadModel(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	os.WriteFile(bad, []byte("garbage"), 0o644)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"eval", "-model", bad}, &out, &errb); code == 0 {
		t.Fatal("eval accepted a garbage model file")
	}
	if !bytes.Contains(errb.Bytes(), []byte("bad.safetensors")) {
		t.Errorf("error %q does not name the file", errb.String())
	}
}

// TestCommittedModelAccuracy is the promise of the model card (issue 12):
// through fashion eval -json on the official 10,000 test images, the
// embedded default model classifies at least 95% correctly, and each
// committed model file at least its card's bar, and says what it is.
func TestCommittedModelAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("classifies all 10,000 test images per model; run without -short (CI's main test run does)")
	}
	dir := datatest.FashionMNISTDir(t)
	committed := func(name string) []string {
		return []string{"-model", filepath.Join("..", "..", "model", name)}
	}
	for _, tc := range []struct {
		name string
		args []string // the model flags; none for the embedded default
		arch string
		min  float64
	}{
		{"default", nil, "resnet20", 0.950},
		{"vgg-w32", committed("vgg-w32.safetensors"), "vgg", 0.940},
		{"mobilenetv3-small", committed("mobilenetv3-small.safetensors"), "mobilenetv3-small-28", 0.900},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := evalFull(t, dir, tc.args...)
			t.Logf("%s: %.4f", tc.name, rep.Accuracy)
			if rep.Model.Arch != tc.arch {
				t.Errorf("arch %q, want %s", rep.Model.Arch, tc.arch)
			}
			if rep.Accuracy < tc.min {
				t.Errorf("accuracy %.4f, want ≥ %.3f", rep.Accuracy, tc.min)
			}
		})
	}
}
