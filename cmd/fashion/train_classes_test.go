package main

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/predictor"
	shipped "github.com/fashion-classifier/fashion/model"
)

// hatImage is a synthetic 28×28 "hat" in dataset style (bright on black):
// a dome over a wide brim, shifted by dx, dy, at brightness v; no
// Fashion-MNIST class looks like it.
func hatImage(dx, dy int, v uint8) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, 28, 28))
	for y := range 28 {
		for x := range 28 {
			cx, cy := x-14-dx, y-16-dy
			dome := cy <= 0 && cx*cx+cy*cy*2 < 64
			brim := cy > 0 && cy <= 2 && cx >= -12 && cx <= 12
			if dome || brim {
				g.SetGray(x, y, color.Gray{Y: v})
			}
		}
	}
	return g
}

// TestTrainInitAddsClasses: fine-tuning the embedded model (-init) with a
// mapping that names a class it lacks ("Hat") writes a model of eleven
// classes, class list from the file, that learns the new class on held-out
// hats while keeping the old classes' answers for Fashion-MNIST images.
// Nothing about time is asserted.
func TestTrainInitAddsClasses(t *testing.T) {
	data := trainData(t)
	root := t.TempDir()
	photos := filepath.Join(root, "train")
	if err := os.MkdirAll(filepath.Join(photos, "hat"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(path string, g *image.Gray) {
		var buf bytes.Buffer
		if err := png.Encode(&buf, g); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for dx := -2; dx <= 2; dx++ {
		for dy := -2; dy <= 2; dy += 2 {
			for _, v := range []uint8{150, 220} {
				write(filepath.Join(photos, "hat", "h"+itoa(n)+".png"), hatImage(dx, dy, v))
				n++
			}
		}
	}
	if err := os.WriteFile(filepath.Join(root, "MAPPING.tsv"), []byte("folder\tfashion_mnist\thow\nhat\tHat\tnew class\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	init := filepath.Join(root, "init.safetensors")
	if err := os.WriteFile(init, shipped.Weights, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "hat.safetensors")
	var stdout, stderr bytes.Buffer
	args := []string{"train", "-data", data, "-init", init, "-photos", photos, "-photo-ratio", "0.2", "-convert-prob", "0",
		"-train-limit", "1024", "-test-limit", "500", "-epochs", "2", "-lr", "0.02", "-batch", "64", "-quiet", "-out", out}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr.String())
	}
	m, err := predictor.Open(context.Background(), out, predictor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(modelfile.FashionClasses), "Hat")
	if got := m.Info().Classes; !slices.Equal(got, want) {
		t.Fatalf("classes %q, want %q", got, want)
	}
	// Held-out hats: shifts and a brightness not trained on.
	var x []float32
	held := 0
	for _, dx := range []int{-1, 1} {
		for _, dy := range []int{-1, 1} {
			row := make([]float32, modelfile.Pixels)
			m.Info().Normalize(row, hatImage(dx, dy, 185).Pix)
			x = append(x, row...)
			held++
		}
	}
	probs, err := m.Predict(x, held)
	if err != nil {
		t.Fatal(err)
	}
	hats := 0
	for i := range held {
		row := probs[i*11 : (i+1)*11]
		if slices.Index(row, slices.Max(row)) == 10 {
			hats++
		}
	}
	t.Logf("%d of %d held-out hats answered Hat; test accuracy recorded %.4f", hats, held, m.Info().TestAccuracy)
	if hats < held*3/4 {
		t.Errorf("only %d of %d held-out hats answered Hat: the new class was not learned", hats, held)
	}
	if acc := m.Info().TestAccuracy; acc < 0.85 {
		t.Errorf("test accuracy after fine-tuning %.4f, want the old classes kept (≥ 0.85)", acc)
	}
}
