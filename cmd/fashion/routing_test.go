package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	shipped "github.com/fashion-classifier/fashion/model"
)

// routingInputs writes n Fashion-MNIST test images as 28×28 PNGs and as
// product photos (productPhoto) into dir.
func routingInputs(t *testing.T, dir string, n int) (datasetFiles, photoFiles []string) {
	t.Helper()
	test, err := idx.LoadTest(datatest.FashionMNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		orig := filepath.Join(dir, "orig"+itoa(i)+".png")
		f, err := os.Create(orig)
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, &image.Gray{Pix: test.Images.Image(i), Stride: 28, Rect: image.Rect(0, 0, 28, 28)}); err != nil {
			t.Fatal(err)
		}
		f.Close()
		photo := filepath.Join(dir, "photo"+itoa(i)+".jpg")
		productPhoto(t, test.Images.Image(i), photo)
		datasetFiles, photoFiles = append(datasetFiles, orig), append(photoFiles, photo)
	}
	return datasetFiles, photoFiles
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestPredictRouting: through predict -json, the embedded default answers
// 28×28 dataset images with the benchmark model and photos with the photo
// model and says which; -model answers everything itself; -photo-model
// replaces the photo model only.
func TestPredictRouting(t *testing.T) {
	dir := t.TempDir()
	datasetFiles, photoFiles := routingInputs(t, dir, 3)
	photoModel := filepath.Join(dir, "photo-model.safetensors")
	if err := os.WriteFile(photoModel, shipped.PhotoWeights, 0o644); err != nil {
		t.Fatal(err)
	}
	benchModel := filepath.Join(dir, "bench-model.safetensors")
	if err := os.WriteFile(benchModel, shipped.Weights, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WEIGHT_PATH", "")
	tests := []struct {
		name           string
		flags          []string
		dataset, photo string
	}{
		{"embedded", nil, modelfile.DefaultName, modelfile.PhotoName},
		{"embedded with -tta", []string{"-tta"}, modelfile.DefaultName, modelfile.PhotoName},
		{"-model", []string{"-model", photoModel}, modelfile.DefaultName, modelfile.DefaultName},
		{"-photo-model", []string{"-photo-model", photoModel}, modelfile.DefaultName, modelfile.PhotoName},
		{"-model and -photo-model", []string{"-model", benchModel, "-photo-model", photoModel}, modelfile.DefaultName, modelfile.PhotoName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Mixed in one call, in input order.
			args := append(append(append([]string{}, tt.flags...), datasetFiles[0], photoFiles[0]), datasetFiles[1:]...)
			args = append(args, photoFiles[1:]...)
			res := predictJSON(t, args...)
			if len(res) != len(args)-len(tt.flags) {
				t.Fatalf("%d answers for %d files", len(res), len(args)-len(tt.flags))
			}
			for _, r := range res {
				want := tt.dataset
				if strings.HasSuffix(r.File, ".jpg") {
					want = tt.photo
				}
				if r.Model != want || r.Label == "" || r.Error != "" {
					t.Errorf("%s: answered by %q (%+v), want %q", filepath.Base(r.File), r.Model, r, want)
				}
			}
		})
	}
	// The embedded photo model has a detector: its answers carry one too.
	for _, r := range predictJSON(t, photoFiles...) {
		if r.InDistribution == nil || r.OODScore == nil {
			t.Errorf("%s: no in_distribution/ood_score from the photo model", r.File)
		}
	}
}

// TestVersionListsBothModels: version names both embedded models with
// their checksums, and only the -model file when one is given.
func TestVersionListsBothModels(t *testing.T) {
	t.Setenv("WEIGHT_PATH", "")
	code, stdout, stderr := runCmd(context.Background(), "version", "-json")
	if code != 0 {
		t.Fatalf("version exited %d: %s", code, stderr)
	}
	var rep versionReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Model == nil || rep.Model.Name != modelfile.DefaultName || rep.Model.SHA256 != sha(shipped.Weights) {
		t.Errorf("model %+v, want %s with sha256 %s", rep.Model, modelfile.DefaultName, sha(shipped.Weights))
	}
	if rep.PhotoModel == nil || rep.PhotoModel.Name != modelfile.PhotoName || rep.PhotoModel.SHA256 != sha(shipped.PhotoWeights) {
		t.Errorf("photo model %+v, want %s with sha256 %s", rep.PhotoModel, modelfile.PhotoName, sha(shipped.PhotoWeights))
	}
	code, stdout, _ = runCmd(context.Background(), "version")
	if code != 0 || !strings.Contains(stdout, "photo model sha256:") || !strings.Contains(stdout, sha(shipped.PhotoWeights)) || !strings.Contains(stdout, "routing:") {
		t.Errorf("version text lacks the photo model:\n%s", stdout)
	}
	file := filepath.Join(t.TempDir(), "m.safetensors")
	if err := os.WriteFile(file, shipped.Weights, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = runCmd(context.Background(), "version", "-json", "-model", file)
	rep = versionReport{}
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil || rep.PhotoModel != nil {
		t.Errorf("version -model: exit %d, photo model %+v; want none", code, rep.PhotoModel)
	}
}

// TestEvalPhotosRoutes: eval -photos answers each photo with the model
// predict would use: the photo model for photos, the benchmark model for a
// dataset-like image in a photo folder.
func TestEvalPhotosRoutes(t *testing.T) {
	root := t.TempDir()
	split := filepath.Join(root, "test")
	datasetFiles, photoFiles := routingInputs(t, t.TempDir(), 3)
	for _, f := range []struct {
		name  string
		files []string
	}{{"photos", photoFiles}, {"dataset", datasetFiles[:1]}} {
		if err := os.MkdirAll(filepath.Join(split, f.name), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, src := range f.files {
			copyFile(t, src, filepath.Join(split, f.name, filepath.Base(src)), 0o644)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "MAPPING.tsv"), []byte("folder\tfashion_mnist\nphotos\t0|1|2|3|4|5|6|7|8|9\ndataset\tnone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WEIGHT_PATH", "")
	code, stdout, stderr := runCmd(context.Background(), "eval", "-limit", "200", "-data", datatest.FashionMNISTDir(t), "-photos", split)
	if code != 0 {
		t.Fatalf("eval exited %d: %s", code, stderr)
	}
	want := "answered by " + modelfile.PhotoName + "×3, " + modelfile.DefaultName + "×1"
	if !strings.Contains(stdout, want) {
		t.Errorf("eval -photos output lacks %q:\n%s", want, stdout)
	}
	if !strings.Contains(stdout, "3/3 ") {
		t.Errorf("the folder mapped to every class is not 3/3 right:\n%s", stdout)
	}
}
