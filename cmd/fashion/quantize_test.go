package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/datatest"
)

// evalReport is what the tests read of fashion eval -json.
type evalReport struct {
	Accuracy float64 `json:"accuracy"`
	N        int     `json:"n"`
	Model    struct {
		Arch      string `json:"arch"`
		Precision string `json:"precision"`
	} `json:"model"`
}

// evalFull runs fashion eval -json on the whole official test set with the
// given model flags (none: the embedded default) and returns its report.
func evalFull(t *testing.T, dir string, model ...string) evalReport {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(context.Background(), append([]string{"eval", "-data", dir, "-json"}, model...), &out, &errb); code != 0 {
		t.Fatalf("eval %v exited %d: %s", model, code, errb.String())
	}
	var rep evalReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("eval -json printed %q: %v", out.String(), err)
	}
	if rep.N != 10000 {
		t.Fatalf("eval measured %d images, want the 10000 of the test set", rep.N)
	}
	return rep
}

// evalAccuracy is evalFull's accuracy and precision.
func evalAccuracy(t *testing.T, dir string, model ...string) (acc float64, precision string) {
	t.Helper()
	rep := evalFull(t, dir, model...)
	return rep.Accuracy, rep.Model.Precision
}

// TestQuantizeKeepsAccuracy is issue 13's acceptance test: the default
// model quantized to int8 on training images is within 0.2 points of the
// float32 model on the official test set.
func TestQuantizeKeepsAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("evaluates the whole test set twice")
	}
	dir := datatest.FashionMNISTDir(t)
	q := filepath.Join(t.TempDir(), "q.safetensors")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"quantize", "-data", dir, "-calib", "1000", "-out", q}, &out, &errb); code != 0 {
		t.Fatalf("quantize exited %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "layer 0: float32") || !strings.Contains(out.String(), "layer 1: int8") {
		t.Errorf("quantize printed %q", out.String())
	}
	fp, fpPrec := evalAccuracy(t, dir)
	i8, i8Prec := evalAccuracy(t, dir, "-model", q)
	t.Logf("test accuracy: float32 %.4f, int8 %.4f", fp, i8)
	if fpPrec != "float32" || i8Prec != "int8" {
		t.Errorf("precisions %q and %q, want float32 and int8", fpPrec, i8Prec)
	}
	if math.Abs(fp-i8) > 0.002 {
		t.Errorf("int8 accuracy %.4f is more than 0.2 points from float32's %.4f", i8, fp)
	}
	out.Reset()
	if code := run(context.Background(), []string{"version", "-model", q}, &out, &errb); code != 0 || !strings.Contains(out.String(), "int8") {
		t.Errorf("version -model q exited %d and printed %q", code, out.String())
	}
	// An int8 file is not quantized again, and without the float32
	// weights of its int8 layers it is neither exported nor trained from.
	if code := run(context.Background(), []string{"quantize", "-data", dir, "-model", q, "-out", q + "2"}, &out, &errb); code == 0 {
		t.Error("quantizing an int8 model succeeded")
	}
	errb.Reset()
	if code := run(context.Background(), []string{"export", "-model", q, "-out", q + ".onnx"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "float32 model it was quantized from") {
		t.Errorf("export of the int8 model exited %d: %s", code, errb.String())
	}
}

// TestQuantizeONNXKeepsAccuracy is issue 13's acceptance test for an
// imported model: the shared PyTorch VGG ONNX file quantized to int8 on
// training images is within 0.2 points of the float32 ONNX model on the
// official test set, and its file is smaller than the ONNX file.
func TestQuantizeONNXKeepsAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("evaluates the whole test set twice")
	}
	dir := datatest.FashionMNISTDir(t)
	src := datatest.SharedPath(t, "models/vgg_w32_fmnist.onnx")
	q := filepath.Join(t.TempDir(), "q.safetensors")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"quantize", "-model", src, "-data", dir, "-calib", "1000", "-out", q}, &out, &errb); code != 0 {
		t.Fatalf("quantize exited %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "layer 0: float32") || !strings.Contains(out.String(), "layer 1: int8") {
		t.Errorf("quantize printed %q", out.String())
	}
	fp, fpPrec := evalAccuracy(t, dir, "-model", src)
	i8, i8Prec := evalAccuracy(t, dir, "-model", q)
	t.Logf("test accuracy: float32 ONNX %.4f, int8 %.4f", fp, i8)
	if fpPrec != "float32" || i8Prec != "int8" {
		t.Errorf("precisions %q and %q, want float32 and int8", fpPrec, i8Prec)
	}
	if math.Abs(fp-i8) > 0.002 {
		t.Errorf("int8 accuracy %.4f is more than 0.2 points from float32's %.4f", i8, fp)
	}
	srcInfo, err1 := os.Stat(src)
	qInfo, err2 := os.Stat(q)
	if err1 != nil || err2 != nil || qInfo.Size() >= srcInfo.Size()/2 {
		t.Errorf("int8 file is %v bytes, the ONNX file %v (%v, %v)", qInfo.Size(), srcInfo.Size(), err1, err2)
	}
	out.Reset()
	if code := run(context.Background(), []string{"version", "-model", q}, &out, &errb); code != 0 || !strings.Contains(out.String(), "int8") {
		t.Errorf("version -model q exited %d and printed %q", code, out.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"export", "-model", q, "-out", q + ".onnx"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "without float32 weights") {
		t.Errorf("export of the int8 ONNX model exited %d: %s", code, errb.String())
	}
}

func TestQuantizeRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"quantize"},
		{"quantize", "-out", "x", "-calib", "0"},
		{"quantize", "-out", "x", "-calib", "1000000"},
		{"quantize", "-out", "x", "-float", "middle", "-data", "/nonexistent"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code == 0 {
			t.Errorf("%v succeeded", args)
		}
	}
}

func TestParseLayerList(t *testing.T) {
	got, err := parseLayerList("first, last,2", 7)
	if err != nil || len(got) != 3 || !got[0] || !got[6] || !got[2] {
		t.Errorf("parseLayerList = %v, %v", got, err)
	}
	if got, err := parseLayerList("none", 7); err != nil || len(got) != 0 {
		t.Errorf("parseLayerList(none) = %v, %v", got, err)
	}
	for _, bad := range []string{"7", "-1", "x", "1.5", "01"} {
		if _, err := parseLayerList(bad, 7); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
