package imagefolder

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/imageprep"
)

var classes = []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

func TestReadMapping(t *testing.T) {
	m, err := ReadMapping(strings.NewReader("folder\tfashion_mnist\tmeaning\nt-shirt\t0\tT-shirt\nshoes\t5|7|9\tfootwear\nhat\tnone\tno class\nskirt\tSkirt\tnew\nboots\tAnkle boot\n"), classes)
	if err != nil {
		t.Fatal(err)
	}
	want := []Folder{{"t-shirt", []int{0}}, {"shoes", []int{5, 7, 9}}, {"hat", nil}, {"skirt", []int{10}}, {"boots", []int{9}}}
	if len(m.Folders) != len(want) {
		t.Fatalf("folders %v, want %v", m.Folders, want)
	}
	for i, f := range want {
		if m.Folders[i].Name != f.Name || !slices.Equal(m.Folders[i].Classes, f.Classes) {
			t.Errorf("folder %d = %v, want %v", i, m.Folders[i], f)
		}
	}
	if len(m.Classes) != 11 || m.Classes[10] != "Skirt" {
		t.Errorf("classes %q, want the ten plus Skirt", m.Classes)
	}
	if len(classes) != 10 {
		t.Fatal("ReadMapping changed its argument")
	}
	for _, bad := range []string{
		"h\nx\n",          // no tab
		"h\nx\t12\n",      // id out of range
		"h\n../up\t1\n",   // path in folder name
		"h\na\t1\na\t2\n", // twice
		"h\n",             // nothing
	} {
		if _, err := ReadMapping(strings.NewReader(bad), classes); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func writePNG(t *testing.T, path string, fill uint8) {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 60, 80))
	for i := range img.Pix {
		img.Pix[i] = 240
	}
	for y := 20; y < 60; y++ {
		for x := 15; x < 45; x++ {
			img.SetGray(x, y, color.Gray{fill})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadLabelsMix(t *testing.T) {
	dir := t.TempDir()
	for f, n := range map[string]int{"t-shirt": 2, "shoes": 3, "hat": 1} {
		os.Mkdir(filepath.Join(dir, f), 0o755)
		for i := range n {
			writePNG(t, filepath.Join(dir, f, string(rune('a'+i))+".png"), uint8(20*i))
		}
	}
	os.WriteFile(filepath.Join(dir, "shoes", "notes.txt"), []byte("not an image"), 0o644)
	m, err := ReadMapping(strings.NewReader("h\nt-shirt\t0\nshoes\t5|7|9\nhat\tnone\n"), classes)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(context.Background(), dir, m, imageprep.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 6 {
		t.Fatalf("loaded %d images, want 6", s.Len())
	}
	// Every image went through the conversion: a bright object on black.
	for i := range s.Len() {
		img := s.Image(i)
		if img[0] != 0 || slices.Max(img) < 100 {
			t.Errorf("image %d (%s) does not look converted", i, s.Files[i])
		}
	}
	labels, ok, sets := s.Labels()
	wantLabels := []uint8{0, 0, 10, 10, 10, 0}
	wantOK := []bool{true, true, true, true, true, false}
	if !slices.Equal(labels, wantLabels) || !slices.Equal(ok, wantOK) || len(sets) != 1 || !slices.Equal(sets[0], []int{5, 7, 9}) {
		t.Errorf("labels %v ok %v sets %v", labels, ok, sets)
	}

	const px = imageprep.Side * imageprep.Side
	fm := idx.Set{Images: idx.Images{N: 10, Rows: 28, Cols: 28, Pix: make([]uint8, 10*px)}, Labels: make([]uint8, 10)}
	mixed, msets, err := Mix(fm, s, MixConfig{Ratio: 0.5, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Half the mixed set is photo copies: 10 of the 5 trainable photos.
	if mixed.Images.N != 20 || len(msets) != 1 {
		t.Fatalf("mixed %d images with sets %v, want 20 and one set", mixed.Images.N, msets)
	}
	counts := map[uint8]int{}
	for _, l := range mixed.Labels[10:] {
		counts[l]++
	}
	if counts[0] != 4 || counts[10] != 6 {
		t.Errorf("photo copies' labels %v, want 4× class 0 and 6× set 10", counts)
	}
	if _, _, err := Mix(fm, s, MixConfig{Ratio: 1}); err == nil {
		t.Error("ratio 1 accepted")
	}
}

func TestConvertKeepsAnImage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	src := make([]uint8, 28*28)
	for y := 4; y < 24; y++ {
		for x := 6; x < 22; x++ {
			src[y*28+x] = 200
		}
	}
	changed := 0
	for range 50 {
		dst := make([]uint8, len(src))
		Convert(rng, dst, src)
		if !bytes.Equal(dst, src) {
			changed++
		}
		var sum int
		for _, v := range dst {
			sum += int(v)
		}
		if sum == 0 {
			t.Fatal("Convert erased the object")
		}
	}
	if changed < 40 {
		t.Errorf("only %d of 50 conversions changed the image", changed)
	}
}
