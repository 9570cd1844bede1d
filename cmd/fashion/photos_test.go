package main

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/imagefolder"
	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// TestPhotoTestSplit runs the test split of ../shared/data/clothing-photos
// through `fashion predict -json` with the committed default models (the
// photos are answered by the photo model, predictor.Routed) and checks
// each folder's answers against MAPPING.tsv, at issue 11's targets: the
// five exact folders ≥ 80%, shoes in a footwear class ≥ 85% and
// longsleeve in an upper-body class ≥ 85%. Measured with the committed
// photo model: 146/173 = 84.4%, 63/73 = 86.3% and 71/72 = 98.6% (the
// benchmark model alone: 62.4%, 8.2%, 76.4%).
func TestPhotoTestSplit(t *testing.T) {
	dir := datatest.SharedPath(t, "data/clothing-photos/test")
	m, err := imagefolder.ReadMappingFile(mappingBeside(dir), modelfile.FashionClasses)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	var folder []int
	for fi, f := range m.Folders {
		if f.Classes == nil {
			continue
		}
		names, err := filepath.Glob(filepath.Join(dir, f.Name, "*.jpg"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, names...)
		for range names {
			folder = append(folder, fi)
		}
	}
	res := predictJSON(t, files...)
	if len(res) != len(files) {
		t.Fatalf("%d answers for %d files", len(res), len(files))
	}
	right := map[string][2]int{}
	for i, r := range res {
		f := m.Folders[folder[i]]
		c := right[f.Name]
		c[1]++
		if slices.Contains(f.Classes, r.ClassID) {
			c[0]++
		}
		right[f.Name] = c
	}
	var exact [2]int
	for _, f := range m.Folders {
		if f.Classes == nil {
			continue
		}
		if len(f.Classes) == 1 {
			exact[0] += right[f.Name][0]
			exact[1] += right[f.Name][1]
		}
		t.Logf("%-10s %d/%d", f.Name, right[f.Name][0], right[f.Name][1])
	}
	share := func(c [2]int) float64 { return float64(c[0]) / float64(max(c[1], 1)) }
	t.Logf("five exact folders %d/%d = %.1f%% (target 80%%), shoes %.1f%% (target 85%%), longsleeve %.1f%% (target 85%%)",
		exact[0], exact[1], 100*share(exact), 100*share(right["shoes"]), 100*share(right["longsleeve"]))
	for _, c := range []struct {
		what  string
		got   float64
		floor float64
	}{
		{"five exact folders", share(exact), 0.80},
		{"shoes in a footwear class", share(right["shoes"]), 0.85},
		{"longsleeve in an upper-body class", share(right["longsleeve"]), 0.85},
	} {
		if c.got < c.floor {
			t.Errorf("%s: %.1f%%, below issue 11's target %.0f%%", c.what, 100*c.got, 100*c.floor)
		}
	}
}

// TestOutOfDistributionThroughPredict: of 1,000 MNIST digits, at least 95%
// must come out of `fashion predict -json` with in_distribution false,
// while at least 95% of 1,000 Fashion-MNIST test images keep true. The
// Fashion-MNIST images are 5000–5999: the first 5,000 test images
// calibrated the threshold (fashion calibrate), MNIST never did.
func TestOutOfDistributionThroughPredict(t *testing.T) {
	mnistDir := datatest.SharedPath(t, "data/mnist-test")
	mnist, err := idx.LoadTest(mnistDir)
	if err != nil {
		t.Fatal(err)
	}
	fm := datatest.FashionMNISTTest(t)
	tmp := t.TempDir()
	write := func(set idx.Set, from, n int, prefix string) []string {
		var out []string
		for i := from; i < from+n; i++ {
			g := &image.Gray{Pix: set.Images.Image(i), Stride: 28, Rect: image.Rect(0, 0, 28, 28)}
			p := filepath.Join(tmp, prefix+"-"+strconv.Itoa(i)+".png")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := png.Encode(f, g); err != nil {
				t.Fatal(err)
			}
			f.Close()
			out = append(out, p)
		}
		return out
	}
	count := func(files []string, want bool) int {
		n := 0
		for _, r := range predictJSON(t, files...) {
			if r.InDistribution == nil || r.OODScore == nil {
				t.Fatalf("%s: no in_distribution/ood_score", r.File)
			}
			if *r.InDistribution == want {
				n++
			}
		}
		return n
	}
	digitsOut := count(write(mnist, 0, 1000, "mnist"), false)
	clothesIn := count(write(fm, calibrationSplit, 1000, "fmnist"), true)
	t.Logf("MNIST: %d/1000 in_distribution=false; Fashion-MNIST test 5000–5999: %d/1000 true", digitsOut, clothesIn)
	if digitsOut < 950 {
		t.Errorf("only %d of 1,000 MNIST digits flagged as not clothing, want ≥ 950", digitsOut)
	}
	if clothesIn < 950 {
		t.Errorf("only %d of 1,000 Fashion-MNIST images kept in distribution, want ≥ 950", clothesIn)
	}
}
