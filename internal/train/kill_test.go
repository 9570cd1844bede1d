package train_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/predictor"
	"github.com/fashion-classifier/fashion/internal/safetensors"
)

// buildFashion builds the fashion command into dir, or skips the test when
// no Go toolchain is at hand.
func buildFashion(t *testing.T, dir string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build fashion with: %v", err)
	}
	bin := filepath.Join(dir, "fashion")
	cmd := exec.Command(gobin, "build", "-o", bin, "github.com/fashion-classifier/fashion/cmd/fashion")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building fashion: %v\n%s", err, out)
	}
	return bin
}

// writeTinyDataset writes a synthetic Fashion-MNIST lookalike to dir: n
// training and n/4 test images whose class is written into their brightness
// pattern, in the four standard uncompressed IDX files.
func writeTinyDataset(t *testing.T, dir string, n int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 11))
	set := func(n int) (idx.Images, []uint8) {
		im := idx.Images{N: n, Rows: 28, Cols: 28, Pix: make([]uint8, n*28*28)}
		labels := make([]uint8, n)
		for i := range n {
			c := uint8(i % 10)
			labels[i] = c
			pix := im.Image(i)
			for y := range 28 {
				for x := range 28 {
					v := 0
					if (x/3+int(c))%4 == 0 || y/(int(c)+2)%2 == 0 {
						v = 120 + rng.IntN(120)
					}
					pix[y*28+x] = uint8(v)
				}
			}
		}
		return im, labels
	}
	write := func(name string, f func(*os.File) error) {
		out, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := f(out); err != nil {
			t.Fatalf("writing %s: %v", name, err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
	trainIm, trainLab := set(n)
	testIm, testLab := set(n / 4)
	write(idx.TrainImagesName, func(f *os.File) error { return idx.WriteImages(f, trainIm) })
	write(idx.TrainLabelsName, func(f *os.File) error { return idx.WriteLabels(f, trainLab) })
	write(idx.TestImagesName, func(f *os.File) error { return idx.WriteImages(f, testIm) })
	write(idx.TestLabelsName, func(f *os.File) error { return idx.WriteLabels(f, testLab) })
}

// TestKilledTrainingResumes starts "fashion train" on a tiny dataset, kills
// it with SIGKILL while it writes its second checkpoint (or, if that moment
// is missed, right after), checks the checkpoint left behind is a complete
// safetensors file, and reruns the same command, which must resume from it
// and finish with a loadable model.
func TestKilledTrainingResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the fashion binary and trains twice; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildFashion(t, dir)
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	writeTinyDataset(t, data, 256)
	out := filepath.Join(dir, "m.safetensors")
	ckpt := out + ".ckpt"
	// -quiet drops only the progress bar; the resume notice is still printed.
	args := []string{"train", "-quiet", "-data", data, "-arch", "vgg", "-epochs", "3", "-batch", "64",
		"-train-limit", "256", "-test-limit", "64", "-out", out, "-threads", "2"}

	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Wait for the first checkpoint, then for the temporary file of the
	// second: killing while it exists interrupts a checkpoint write.
	var firstSeen time.Time
	var firstMod time.Time
	midWrite := false
	deadline := time.After(3 * time.Minute)
poll:
	for {
		select {
		case err := <-exited:
			t.Fatalf("training exited (%v) before it could be killed; stderr:\n%s", err, stderr.String())
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("no checkpoint within 3 minutes; stderr:\n%s", stderr.String())
		case <-time.After(time.Millisecond):
		}
		fi, err := os.Stat(ckpt)
		if err != nil {
			continue
		}
		if firstSeen.IsZero() {
			firstSeen, firstMod = time.Now(), fi.ModTime()
			continue
		}
		tmps, _ := filepath.Glob(filepath.Join(dir, "."+filepath.Base(ckpt)+".tmp*"))
		switch {
		case len(tmps) > 0:
			midWrite = true
			break poll
		case !fi.ModTime().Equal(firstMod):
			break poll // the second checkpoint landed before we saw its temporary file
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("killing training: %v", err)
	}
	if err := <-exited; err == nil {
		t.Fatal("training exited cleanly after SIGKILL")
	}
	killedAfter := time.Since(start)

	f, err := safetensors.ReadFile(ckpt)
	if err != nil {
		t.Fatalf("checkpoint left by the killed run is not a valid safetensors file: %v", err)
	}
	epoch, err := strconv.Atoi(f.Metadata["checkpoint_epoch"])
	if err != nil || epoch < 1 || epoch > 2 {
		t.Fatalf("checkpoint says epoch %q, want 1 or 2", f.Metadata["checkpoint_epoch"])
	}

	stderr.Reset()
	var stdout bytes.Buffer
	rerun := exec.Command(bin, args...)
	rerun.Stdout, rerun.Stderr = &stdout, &stderr
	if err := rerun.Run(); err != nil {
		t.Fatalf("rerun failed: %v\n%s", err, stderr.String())
	}
	want := fmt.Sprintf("resuming from %s after epoch %d of 3", ckpt, epoch)
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("rerun did not say %q; stderr:\n%s", want, stderr.String())
	}
	if _, err := predictor.Open(context.Background(), out, predictor.Options{}); err != nil {
		t.Errorf("the resumed run's model does not load: %v", err)
	}
	if _, err := os.Stat(ckpt); !os.IsNotExist(err) {
		t.Errorf("checkpoint still present after a finished run (stat: %v)", err)
	}
	rec, _ := json.Marshal(map[string]any{
		"scenario":   "model-file fault: fashion train killed with SIGKILL",
		"sent":       "SIGKILL to `fashion train -epochs 3` (256 synthetic images) " + map[bool]string{true: "while the epoch-2 checkpoint's temporary file existed", false: "right after the epoch-2 checkpoint was renamed into place"}[midWrite],
		"got":        fmt.Sprintf("checkpoint valid (epoch %d); rerun printed %q and finished; model loads", epoch, want),
		"elapsed_ms": float64(killedAfter.Milliseconds()),
		"resources":  "",
		"pass":       !t.Failed(),
	})
	t.Logf("RELIABILITY %s", rec)
}
