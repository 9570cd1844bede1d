package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/safetensors"
)

func trainData(t *testing.T) string {
	t.Helper()
	dir, err := idx.FindDir("", os.Getenv)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skipf("no dataset: %v", err)
	}
	return dir
}

// TestFastRecipeLearns is the CI smoke test of `-recipe fast`: the recipe
// (shortened to three epochs of a sixth of the data) must learn, and the written model
// must evaluate, with and without -tta, near the accuracy it recorded.
// Nothing about time is asserted.
func TestFastRecipeLearns(t *testing.T) {
	if testing.Short() {
		t.Skip("trains for a minute or so; run without -short")
	}
	data := trainData(t)
	out := filepath.Join(t.TempDir(), "fast.safetensors")
	var stdout, stderr bytes.Buffer
	args := []string{"train", "-recipe", "fast", "-data", data, "-epochs", "3", "-train-limit", "10240", "-test-limit", "1000", "-quiet", "-out", out}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr.String())
	}
	t.Log(stderr.String())
	if !strings.Contains(stderr.String(), "on 10240 images") {
		t.Errorf("header does not give the limited image count: %q", stderr.String())
	}
	for _, tta := range []bool{false, true} {
		args := []string{"eval", "-data", data, "-model", out, "-limit", "1000", "-json"}
		if tta {
			args = append(args, "-tta")
		}
		stdout.Reset()
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("eval exited %d: %s", code, stderr.String())
		}
		var rep struct {
			Accuracy float64 `json:"accuracy"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		t.Logf("tta %v: accuracy %.4f", tta, rep.Accuracy)
		if rep.Accuracy < 0.75 {
			t.Errorf("fast recipe on 10,240 images for 3 epochs (tta %v): test accuracy %.4f, want ≥ 0.75", tta, rep.Accuracy)
		}
	}
}

// cancelOnLine cancels a context when a line starting with prefix is
// written, standing in for Ctrl-C at the end of an epoch.
type cancelOnLine struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	prefix string
	cancel func()
}

func (c *cancelOnLine) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if bytes.HasPrefix(p, []byte(c.prefix)) {
		c.cancel()
	}
	return c.buf.Write(p)
}

// TestTrainInterruptAndResume walks through issue 15's complaints: Ctrl-C
// says the checkpoint was kept and how to resume, a changed -lr or -arch is
// refused naming the flag, and the finished run's training time and
// segments cover both runs.
func TestTrainInterruptAndResume(t *testing.T) {
	data := trainData(t)
	out := filepath.Join(t.TempDir(), "m.safetensors")
	args := []string{"train", "-data", data, "-epochs", "2", "-batch", "64", "-train-limit", "256", "-test-limit", "100", "-quiet", "-out", out}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &cancelOnLine{prefix: "epoch 1/2:", cancel: cancel}
	var stdout bytes.Buffer
	if code := run(ctx, args, &stdout, stderr); code == 0 {
		t.Fatal("interrupted training exited 0")
	}
	msg := stderr.buf.String()
	for _, want := range []string{"on 256 images", "checkpoint " + out + ".ckpt keeps epoch 1 of 2", "to resume, run the same command again: fashion train -data"} {
		if !strings.Contains(msg, want) {
			t.Errorf("output lacks %q:\n%s", want, msg)
		}
	}
	for _, change := range [][]string{{"-lr", "0.05"}, {"-arch", "resnet20"}, {"-teacher", shippedModel}} {
		var e bytes.Buffer
		if code := run(context.Background(), append(append([]string{}, args...), change...), &stdout, &e); code == 0 {
			t.Errorf("resume with %v accepted", change)
		} else if !strings.Contains(e.String(), change[0]+" was ") || !strings.Contains(e.String(), "delete") {
			t.Errorf("resume with %v: unhelpful error %q", change, e.String())
		}
	}
	stdout.Reset()
	var e bytes.Buffer
	if code := run(context.Background(), args, &stdout, &e); code != 0 {
		t.Fatalf("resume exited %d: %s", code, e.String())
	}
	if s := stdout.String(); !strings.Contains(s, "training time") || !strings.Contains(s, "epochs 1–1: started") || !strings.Contains(s, "epochs 2–2: started") {
		t.Errorf("finished output does not list both segments:\n%s", s)
	}
	if _, err := os.Stat(out + ".ckpt"); !os.IsNotExist(err) {
		t.Errorf("checkpoint left behind after the finished run: %v", err)
	}
}

// shippedModel is the repository's benchmark model file, a teacher for
// the distillation tests.
const shippedModel = "../../model/fashion-mnist.safetensors"

// TestTrainDistils runs train -teacher with the teacher's full weight: the
// targets are computed for the limited training images only, the network
// learns from them, and bad combinations are refused before any work.
func TestTrainDistils(t *testing.T) {
	data := trainData(t)
	out := filepath.Join(t.TempDir(), "kd.safetensors")
	var stdout, stderr bytes.Buffer
	args := []string{"train", "-data", data, "-epochs", "2", "-train-limit", "1024", "-test-limit", "500", "-quiet", "-out", out,
		"-teacher", shippedModel, "-distill", "1"}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr.String())
	}
	if want := "teacher " + shippedModel + ": 1024 images"; !strings.Contains(stderr.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, stderr.String())
	}
	var acc float64
	if _, err := fmt.Sscanf(stdout.String()[strings.Index(stdout.String(), "test accuracy"):], "test accuracy %f", &acc); err != nil || acc < 0.5 {
		t.Errorf("distilled model: test accuracy %v (%v), want ≥ 0.5:\n%s", acc, err, stdout.String())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-teacher", shippedModel, "-distill", "0"}, "-distill must be in (0, 1]"},
		{[]string{"-teacher", shippedModel, "-distill", "1.5"}, "-distill must be in (0, 1]"},
		{[]string{"-teacher", shippedModel, "-photos", t.TempDir()}, "-teacher and -photos cannot be combined"},
		{[]string{"-teacher", filepath.Join(t.TempDir(), "missing.safetensors")}, "-teacher"},
	} {
		var e bytes.Buffer
		args := append([]string{"train", "-data", data, "-epochs", "1", "-train-limit", "256", "-quiet", "-out", out + "2"}, tc.args...)
		if code := run(context.Background(), args, &stdout, &e); code == 0 || !strings.Contains(e.String(), tc.want) {
			t.Errorf("%v: exit %d, error %q, want one with %q", tc.args, code, e.String(), tc.want)
		}
	}
}

// TestTrainStorageF16: train -storage f16 writes every network tensor as
// F16, records storage f16 and the test accuracy of the rounded weights,
// which eval of the written file reproduces.
func TestTrainStorageF16(t *testing.T) {
	data := trainData(t)
	out := filepath.Join(t.TempDir(), "h.safetensors")
	code, stdout, stderr := runCmd(context.Background(), "train", "-data", data, "-epochs", "1", "-batch", "64", "-train-limit", "256",
		"-test-limit", "200", "-quiet", "-storage", "f16", "-out", out)
	if code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "weights rounded to f16 for storage: test acc") {
		t.Errorf("train did not report the rounded weights' accuracy:\n%s", stderr)
	}
	f, err := safetensors.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata["storage"] != "f16" {
		t.Errorf("metadata storage %q, want f16", f.Metadata["storage"])
	}
	for _, tn := range f.Tensors {
		if !tn.Half {
			t.Errorf("tensor %q is F32", tn.Name)
		}
	}
	recorded, err := strconv.ParseFloat(f.Metadata["test_accuracy"], 64)
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCmd(context.Background(), "eval", "-data", data, "-model", out, "-limit", "200", "-json")
	if code != 0 {
		t.Fatalf("eval exited %d: %s", code, stderr)
	}
	var rep struct {
		Accuracy float64 `json:"accuracy"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	// Training evaluates with batch norm as its own layer, inference with
	// it folded: allow one image of 200 to tip.
	if d := rep.Accuracy - recorded; d > 0.0051 || d < -0.0051 {
		t.Errorf("eval of the F16 file: %.4f, recorded %.4f", rep.Accuracy, recorded)
	}
	if code, _, stderr := runCmd(context.Background(), "train", "-data", data, "-storage", "f8", "-out", out); code == 0 || !strings.Contains(stderr, `storage must be "f32" or "f16", got "f8"`) {
		t.Errorf("train -storage f8: exit %d, %q", code, stderr)
	}
}
