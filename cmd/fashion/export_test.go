package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/fashion-classifier/fashion/internal/datatest"
)

// TestExportONNXThenEval exports the embedded model to ONNX and checks that
// evaluating the ONNX file, directly and through WEIGHT_PATH, gives the
// embedded model's accuracy.
func TestExportONNXThenEval(t *testing.T) {
	dir := datatest.FashionMNISTDir(t)
	out := filepath.Join(t.TempDir(), "fashion.onnx")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"export", "-format", "onnx", "-out", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("export exited %d: %s", code, stderr.String())
	}
	accuracy := func(args ...string) float64 {
		t.Helper()
		var o, e bytes.Buffer
		if code := run(context.Background(), append([]string{"eval", "-json", "-limit", "1000", "-data", dir}, args...), &o, &e); code != 0 {
			t.Fatalf("eval %v exited %d: %s", args, code, e.String())
		}
		var rep struct{ Accuracy float64 }
		if err := json.Unmarshal(o.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		return rep.Accuracy
	}
	native := accuracy()
	if got := accuracy("-model", out); got != native {
		t.Errorf("ONNX export: accuracy %v, embedded model %v", got, native)
	}
	names := "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
	if got := accuracy("-model", out, "-mean", "0.2860", "-std", "0.3530", "-classes", names); got != native {
		t.Errorf("ONNX export with explicit -mean/-std/-classes: accuracy %v, embedded model %v", got, native)
	}
	t.Setenv("WEIGHT_PATH", out)
	if got := accuracy(); got != native {
		t.Errorf("ONNX export via WEIGHT_PATH: accuracy %v, embedded model %v", got, native)
	}
}

func TestModelFlagsRefuseMisuse(t *testing.T) {
	for _, args := range [][]string{
		{"eval", "-mean", "0.5"},                   // our own model files record their normalisation
		{"predict", "-classes", "a,b", "x.png"},    // likewise their classes
		{"eval", "-model", "m.onnx", "-std", "-1"}, // nonsense
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), args, &bytes.Buffer{}, &stderr); code == 0 {
			t.Errorf("%q: exit 0, want an error", args)
		}
	}
}
