//go:build linux

package main

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fashion-classifier/fashion/internal/datatest"
)

// imageUID is the image's non-root user (Dockerfile USER, deploy/rootfs).
const imageUID = 65532

// TestWrittenModelsServeAsAnotherUser trains a small model, exports it to
// ONNX, and checks that every file written is 0644 under umask 022 and that
// "fashion predict" running as the container's uid 65532 can load both
// models, while a 0600 copy is refused (so the check can fail). It needs
// root to switch users, as CI runs; elsewhere it skips saying so.
func TestWrittenModelsServeAsAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run predict as uid 65532 (CI runs as root)")
	}
	data := datatest.FashionMNISTDir(t)
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)

	// A directory uid 65532 can enter (t.TempDir's parents are 0700).
	dir, err := os.MkdirTemp("", "fashion-modes-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(dir, "m.safetensors")
	onnxModel := filepath.Join(dir, "m.onnx")
	for _, args := range [][]string{
		{"train", "-data", data, "-out", model, "-epochs", "1", "-train-limit", "256", "-test-limit", "256", "-batch", "64", "-threads", "2", "-quiet"},
		{"export", "-model", model, "-out", onnxModel},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("%v exited %d: %s", args, code, stderr.String())
		}
	}
	for _, name := range []string{model, onnxModel, onnxModel + ".json", filepath.Join(dir, "m-curves.png")} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o644 {
			t.Errorf("%s: mode %v under umask 022, want -rw-r--r--", filepath.Base(name), got)
		}
	}

	// The test binary doubles as the fashion command (see TestMain); copy
	// it where uid 65532 can execute it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "fashion")
	copyFile(t, self, bin, 0o755)
	img := filepath.Join(dir, "trousers.png")
	writePNG(t, img)

	predictAs := func(modelPath string) (string, error) {
		cmd := exec.Command(bin, "predict", "-model", modelPath, img)
		cmd.Env = []string{mainEnv + "=1", "HOME=/nonexistent"}
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: imageUID, Gid: imageUID, Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, m := range []string{model, onnxModel} {
		out, err := predictAs(m)
		if err != nil {
			t.Errorf("predict -model %s as uid %d: %v\n%s", filepath.Base(m), imageUID, err, out)
		} else if !strings.Contains(out, "trousers.png\t") || !strings.Contains(out, "%") {
			t.Errorf("predict -model %s as uid %d printed no classification:\n%s", filepath.Base(m), imageUID, out)
		}
	}

	private := filepath.Join(dir, "private.safetensors")
	copyFile(t, model, private, 0o600)
	if out, err := predictAs(private); err == nil || !strings.Contains(out, "permission denied") {
		t.Errorf("predict on a 0600 model as uid %d: error %v, output %q; want permission denied", imageUID, err, out)
	}
}

func copyFile(t *testing.T, from, to string, mode fs.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, mode); err != nil {
		t.Fatal(err)
	}
}

// writePNG draws a 28×28 pair of trousers, bright on black.
func writePNG(t *testing.T, path string) {
	t.Helper()
	g := image.NewGray(image.Rect(0, 0, 28, 28))
	for y := 2; y < 26; y++ {
		for x := 8; x < 20; x++ {
			if y < 8 || x < 13 || x > 14 {
				g.SetGray(x, y, color.Gray{Y: 200})
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, g); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
