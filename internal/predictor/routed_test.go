package predictor

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fashion-classifier/fashion/internal/imageprep"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	shipped "github.com/fashion-classifier/fashion/model"
)

// datasetPNG is a Fashion-MNIST-style image: 28×28, a bright garment-like
// block on black.
func datasetPNG(t *testing.T) []byte {
	t.Helper()
	g := image.NewGray(image.Rect(0, 0, 28, 28))
	for y := 4; y < 24; y++ {
		for x := 8; x < 20; x++ {
			g.SetGray(x, y, color.Gray{Y: 200})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, g); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// photoJPEG is a product-photo-like image: a dark object on a light,
// larger canvas, as a shop would send.
func photoJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.RGBA{240, 238, 235, 255}
			if x > w/4 && x < 3*w/4 && y > h/5 && y < 4*h/5 {
				c = color.RGBA{60, 40, 120, 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRouting: the embedded default answers a dataset-like image with the
// benchmark model and a photo with the photo model; a single model file
// answers both itself; -photo-model pairs a file with the embedded
// benchmark model.
func TestRouting(t *testing.T) {
	ctx := context.Background()
	photoFile := write(t, filepath.Join(t.TempDir(), "p.safetensors"), shipped.PhotoWeights)
	embedded, err := Open(ctx, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	single, err := Open(ctx, photoFile, Options{})
	if err != nil {
		t.Fatal(err)
	}
	custom, err := Open(ctx, "", Options{PhotoPath: photoFile})
	if err != nil {
		t.Fatal(err)
	}
	tta := FlipTTA(embedded)
	inputs := map[string][]byte{
		"28×28 dataset image":  datasetPNG(t),
		"photo 300×400":        photoJPEG(t, 300, 400),
		"photo 28×28 on white": photoJPEG(t, 28, 28),
	}
	tests := []struct {
		model, input string
		p            Predictor
		wantName     string
		wantSource   string
	}{
		{"embedded", "28×28 dataset image", embedded, modelfile.DefaultName, "embedded"},
		{"embedded", "photo 300×400", embedded, modelfile.PhotoName, "embedded"},
		{"embedded", "photo 28×28 on white", embedded, modelfile.PhotoName, "embedded"},
		{"embedded with TTA", "28×28 dataset image", tta, modelfile.DefaultName, "embedded"},
		{"embedded with TTA", "photo 300×400", tta, modelfile.PhotoName, "embedded"},
		{"one file", "28×28 dataset image", single, modelfile.DefaultName, photoFile},
		{"one file", "photo 300×400", single, modelfile.DefaultName, photoFile},
		{"photo file", "28×28 dataset image", custom, modelfile.DefaultName, "embedded"},
		{"photo file", "photo 300×400", custom, modelfile.PhotoName, photoFile},
	}
	for _, tt := range tests {
		t.Run(tt.model+"/"+tt.input, func(t *testing.T) {
			in, err := imageprep.Prepare(inputs[tt.input], imageprep.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			m := For(tt.p, in.DatasetLike)
			if info := m.Info(); info.Name != tt.wantName || info.Source != tt.wantSource {
				t.Fatalf("answered by %s (%s), want %s (%s)", info.Name, info.Source, tt.wantName, tt.wantSource)
			}
			x := make([]float32, modelfile.Pixels)
			m.Info().Normalize(x, in.Pix)
			if probs, err := m.Predict(x, 1); err != nil || len(probs) != len(m.Info().Classes) {
				t.Fatalf("Predict: %d values, %v", len(probs), err)
			}
		})
	}
	// As a Predictor the pair is its benchmark model: tensors (already
	// normalised 28×28 inputs) go there.
	r := embedded.(*Routed)
	x := make([]float32, 3*modelfile.Pixels)
	for i := range x {
		x[i] = float32(i%29) / 10
	}
	got, err := r.Predict(x, 3)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := r.Benchmark.Predict(x, 3)
	if !slices.Equal(got, want) {
		t.Error("Routed.Predict differs from its benchmark model's")
	}
	if ms := Models(embedded); len(ms) != 2 || ms[0] != r.Benchmark || ms[1] != r.Photo {
		t.Errorf("Models(routed) = %v", ms)
	}
	if ms := Models(single); len(ms) != 1 || ms[0] != single {
		t.Errorf("Models(single) = %v", ms)
	}
	if r.Benchmark.Info().SHA256 == "" || r.Photo.Info().SHA256 == "" {
		t.Error("a routed model has no checksum")
	}
}

func TestRoutedRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		path string
		opts Options
		want string
	}{
		{"photo model missing", "", Options{PhotoPath: filepath.Join(dir, "nope")}, "photo model: reading model"},
		{"same name", "", Options{Name: modelfile.PhotoName}, "both named"},
		{"photo model not a model", "", Options{PhotoPath: write(t, filepath.Join(dir, "x"), []byte("hello"))}, "photo model: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Open(ctx, tt.path, tt.opts)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("Open error = %v, want one mentioning %q", err, tt.want)
			}
			if p != nil {
				t.Error("Open returned a model with its error")
			}
		})
	}
	if _, err := NewRouted(nil, nil); err == nil {
		t.Error("NewRouted(nil, nil) succeeded")
	}
}
