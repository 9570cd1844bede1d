//go:build unix

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fashion-classifier/fashion/internal/datatest"
)

// specialFiles are the model "files" that are not files: a device that
// never ends and a FIFO nobody writes to.
func specialFiles(t *testing.T, dir string) []struct{ name, path, want string } {
	fifo := filepath.Join(dir, "fifo.safetensors")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	return []struct{ name, path, want string }{
		{"/dev/zero", "/dev/zero", "is a device, FIFO or socket"},
		{"FIFO", fifo, "is a device, FIFO or socket"},
	}
}

// TestBinaryRefusesDevZeroAndFIFO runs the fashion binary (this test
// binary acting as it) with -model /dev/zero and with a FIFO, sending
// SIGTERM as an orchestrator would a moment after start: each must exit
// non-zero within seconds saying why, never read until killed for memory
// or hang.
func TestBinaryRefusesDevZeroAndFIFO(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "model.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		env  string
	}{
		{"serve -model /dev/zero", []string{"serve", "-addr", "127.0.0.1:0", "-grpc-addr", "", "-model", "/dev/zero"}, ""},
		{"serve -model FIFO", []string{"serve", "-addr", "127.0.0.1:0", "-grpc-addr", "", "-model", fifo}, ""},
		{"eval WEIGHT_PATH=FIFO", []string{"eval"}, "WEIGHT_PATH=" + fifo},
		{"version WEIGHT_PATH=/dev/zero", []string{"version"}, "WEIGHT_PATH=/dev/zero"},
		{"calibrate -model /dev/zero", []string{"calibrate", "-model", "/dev/zero", "-out", filepath.Join(t.TempDir(), "out.safetensors")}, ""},
		{"calibrate -model FIFO", []string{"calibrate", "-model", fifo, "-out", filepath.Join(t.TempDir(), "out.safetensors")}, ""},
		{"convert -model /dev/zero", []string{"convert", "-storage", "f16", "-model", "/dev/zero", "-out", filepath.Join(t.TempDir(), "out.safetensors")}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, tt.args...)
			cmd.Env = []string{mainEnv + "=1", "HOME=/nonexistent", tt.env}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.AfterFunc(200*time.Millisecond, func() { cmd.Process.Signal(syscall.SIGTERM) })
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("exit 0, want an error; stderr %q", stderr.String())
				}
				if !strings.Contains(stderr.String(), "is a device, FIFO or socket") {
					t.Errorf("stderr %q does not say why", stderr.String())
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Fatal("still running 10 s after SIGTERM")
			}
		})
	}
}

// TestTrainInitRefusesDevZero checks that train -init opens its model the
// way every other command does.
func TestTrainInitRefusesDevZero(t *testing.T) {
	dir := datatest.FashionMNISTDir(t)
	code, _, stderr := runCmd(context.Background(), "train", "-data", dir, "-init", "/dev/zero", "-out", filepath.Join(t.TempDir(), "m.safetensors"))
	if code == 0 || !strings.Contains(stderr, "-init: reading model: /dev/zero is a device, FIFO or socket") {
		t.Errorf("train -init /dev/zero: exit %d, %q", code, stderr)
	}
}
