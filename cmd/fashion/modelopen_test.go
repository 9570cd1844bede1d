package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/safetensors"
	shipped "github.com/fashion-classifier/fashion/model"
)

// runCmd runs the fashion command line in-process and returns its exit
// code, stdout and stderr.
func runCmd(ctx context.Context, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// exportEmbedded writes the embedded model as ONNX into dir.
func exportEmbedded(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "m.onnx")
	if code, _, stderr := runCmd(context.Background(), "export", "-out", out); code != 0 {
		t.Fatalf("export exited %d: %s", code, stderr)
	}
	return out
}

// serveLine starts serve with args, returns its start-up line and stops it.
func serveLine(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, w := io.Pipe()
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, append([]string{"serve", "-addr", "127.0.0.1:0", "-grpc-addr", "", "-log-level", "error"}, args...), w, &stderr)
		w.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	go io.Copy(io.Discard, out)
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	if err != nil {
		t.Fatalf("serve printed no start-up line (%v): %s", err, stderr.String())
	}
	return line
}

// TestEveryCommandOpensTheSameModel points WEIGHT_PATH at an ONNX file and
// checks that version, predict, eval and serve all describe and use that
// model, and export says it is ONNX already: one opener for all.
func TestEveryCommandOpensTheSameModel(t *testing.T) {
	dir := t.TempDir()
	onnxPath := exportEmbedded(t, dir)
	data, err := os.ReadFile(onnxPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	wantSHA := hex.EncodeToString(sum[:])
	t.Setenv("WEIGHT_PATH", onnxPath)

	code, stdout, stderr := runCmd(context.Background(), "version", "-json")
	if code != 0 {
		t.Fatalf("version exited %d: %s", code, stderr)
	}
	var rep versionReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Model == nil || rep.Model.Arch != "onnx" || rep.Model.Source != onnxPath || rep.Model.SHA256 != wantSHA {
		t.Errorf("version describes %+v (error %q), want the ONNX file %s", rep.Model, rep.ModelError, onnxPath)
	}

	img := filepath.Join(dir, "black.png")
	var buf bytes.Buffer
	png.Encode(&buf, image.NewGray(image.Rect(0, 0, 28, 28)))
	os.WriteFile(img, buf.Bytes(), 0o644)
	if code, _, stderr := runCmd(context.Background(), "predict", img); code != 0 {
		t.Errorf("predict exited %d: %s", code, stderr)
	}

	if line := serveLine(t); !strings.Contains(line, "onnx") {
		t.Errorf("serve start-up line %q does not name the ONNX model", line)
	}

	if code, _, stderr := runCmd(context.Background(), "export", "-out", filepath.Join(dir, "again.onnx")); code == 0 || !strings.Contains(stderr, "already an ONNX model") {
		t.Errorf("export of an ONNX model: exit %d, %q", code, stderr)
	}

	dataDir := datatest.FashionMNISTDir(t)
	code, stdout, stderr = runCmd(context.Background(), "eval", "-json", "-limit", "100", "-data", dataDir)
	if code != 0 {
		t.Fatalf("eval exited %d: %s", code, stderr)
	}
	var ev struct{ Model modelfile.Info }
	if err := json.Unmarshal([]byte(stdout), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Model.Arch != "onnx" || ev.Model.Source != onnxPath || ev.Model.SHA256 != wantSHA {
		t.Errorf("eval used %+v, want the ONNX file", ev.Model)
	}
}

// hostileModel writes the embedded model with one metadata value changed.
func hostileModel(t *testing.T, dir, name, key, value string) string {
	t.Helper()
	f, err := safetensors.Decode(shipped.Weights)
	if err != nil {
		t.Fatal(err)
	}
	f.Metadata[key] = value
	p := filepath.Join(dir, name)
	if err := safetensors.WriteFile(p, f); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCommandsRefuseHostileModelFiles runs every command that opens a
// model on each kind of bad model file: each must exit non-zero with a
// message saying what is wrong, quickly and without exhausting memory.
func TestCommandsRefuseHostileModelFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.bin")
	os.WriteFile(garbage, bytes.Repeat([]byte("not a model "), 100), 0o644)
	huge := filepath.Join(dir, "huge.safetensors")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Truncate(huge, 300<<20); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	classes := `["a"` + strings.Repeat(`,"a"`, 2_000_000-1) + `]`
	files := []struct {
		name, path, want string
	}{
		{"directory", dir, "a directory"},
		{"over the size cap", huge, "more than the cap"},
		{"garbage", garbage, "not a safetensors model file; as ONNX"},
		{"mean +Inf", hostileModel(t, dir, "inf.safetensors", "mean", "+Inf"), "mean +Inf is not in [0, 1]"},
		{"std NaN", hostileModel(t, dir, "nan.safetensors", "std", "NaN"), "std NaN is not in"},
		{"std 1e38", hostileModel(t, dir, "big.safetensors", "std", "1e38"), "std 1e+38 is not in"},
		{"2 million class names", hostileModel(t, dir, "classes.safetensors", "classes", classes), "more than 10000 classes"},
		{"missing", filepath.Join(dir, "nope.safetensors"), "no such file"},
	}
	files = append(files, specialFiles(t, dir)...)
	commands := [][]string{
		{"version"}, {"eval"}, {"predict", "x.png"}, {"serve", "-addr", "127.0.0.1:0", "-grpc-addr", ""}, {"export", "-out", filepath.Join(dir, "out.onnx")},
	}
	for _, file := range files {
		for _, cmd := range commands {
			t.Run(file.name+"/"+cmd[0], func(t *testing.T) {
				args := append([]string{cmd[0], "-model", file.path}, cmd[1:]...)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				start := time.Now()
				code, _, stderr := runCmd(ctx, args...)
				if code == 0 || !strings.Contains(stderr, file.want) {
					t.Errorf("%q: exit %d, stderr %q; want non-zero and %q", args, code, stderr, file.want)
				}
				if d := time.Since(start); d > 10*time.Second {
					t.Errorf("refusing took %v", d)
				}
			})
		}
	}
}

func TestOpenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := hostileModel(t, t.TempDir(), "ok.safetensors", "seed", "1")
	if code, _, stderr := runCmd(ctx, "version", "-model", p); code == 0 || !strings.Contains(stderr, "context canceled") {
		t.Errorf("version with a cancelled context: exit %d, %q", code, stderr)
	}
}
