package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/image/draw"

	"github.com/fashion-classifier/fashion/internal/idx"
)

// productPhoto turns a dataset image (bright object on black) into what a
// shop would show: enlarged, dark object on a light-grey background with
// wide margins, saved as JPEG.
func productPhoto(t *testing.T, pix []uint8, path string) {
	t.Helper()
	g := image.NewGray(image.Rect(0, 0, 28, 28))
	for i, p := range pix {
		g.Pix[i] = 255 - p
	}
	photo := image.NewRGBA(image.Rect(0, 0, 400, 460))
	draw.Draw(photo, photo.Bounds(), image.NewUniform(color.RGBA{0xf4, 0xf4, 0xf2, 0xff}), image.Point{}, draw.Src)
	// Map white (the background) to the photo's grey so no frame shows.
	tinted := image.NewRGBA(g.Bounds())
	for i, p := range g.Pix {
		v := uint8(uint16(p) * 0xf4 / 255)
		tinted.Pix[4*i], tinted.Pix[4*i+1], tinted.Pix[4*i+2], tinted.Pix[4*i+3] = v, v, v, 0xff
	}
	draw.CatmullRom.Scale(photo, image.Rect(60, 80, 340, 360), tinted, tinted.Bounds(), draw.Src, nil)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := jpeg.Encode(f, photo, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
}

func predictJSON(t *testing.T, args ...string) []prediction {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"predict", "-json"}, args...), &out, &errb)
	if code != 0 {
		t.Fatalf("predict exited %d: %s", code, errb.String())
	}
	var res []prediction
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var p prediction
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		res = append(res, p)
	}
	return res
}

// TestPredictProductPhotos checks the promise of the conversion pipeline:
// a dataset image dressed up as a product photo (large, dark on light,
// margins, JPEG) gets the same class as the dataset image itself.
func TestPredictProductPhotos(t *testing.T) {
	dir, err := idx.FindDir("", os.Getenv)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skipf("no dataset: %v", err)
	}
	test, err := idx.LoadTest(dir)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	const n = 60
	var originals, photos []string
	for i := range n {
		orig := filepath.Join(tmp, "orig"+itoa(i)+".png")
		g := &image.Gray{Pix: test.Images.Image(i), Stride: 28, Rect: image.Rect(0, 0, 28, 28)}
		f, err := os.Create(orig)
		if err != nil {
			t.Fatal(err)
		}
		png.Encode(f, g)
		f.Close()
		originals = append(originals, orig)
		photo := filepath.Join(tmp, "photo"+itoa(i)+".jpg")
		productPhoto(t, test.Images.Image(i), photo)
		photos = append(photos, photo)
	}
	a, b := predictJSON(t, originals...), predictJSON(t, photos...)
	same := 0
	for i := range n {
		if a[i].ClassID == b[i].ClassID {
			same++
		}
	}
	t.Logf("%d of %d product photos get the dataset image's class", same, n)
	if same < n*8/10 {
		t.Errorf("only %d of %d product photos get the dataset image's class, want at least 80%%", same, n)
	}
}

func TestPredictReportsBadFilesAndGoesOn(t *testing.T) {
	tmp := t.TempDir()
	bad := filepath.Join(tmp, "bad.png")
	os.WriteFile(bad, []byte("\x89PNG\r\n\x1a\nnot really"), 0o644)
	good := filepath.Join(tmp, "good.png")
	f, _ := os.Create(good)
	png.Encode(f, image.NewGray(image.Rect(0, 0, 28, 28)))
	f.Close()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"predict", bad, good, filepath.Join(tmp, "missing.png")}, &out, &errb)
	if code == 0 {
		t.Error("predict succeeded with two bad files")
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "error") || strings.Contains(lines[1], "error") || !strings.Contains(lines[2], "error") {
		t.Errorf("want one line per file, errors for the bad ones; got:\n%s", out.String())
	}
	if !strings.Contains(errb.String(), "2 of 3 files") {
		t.Errorf("stderr %q does not say how many failed", errb.String())
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
