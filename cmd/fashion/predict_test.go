package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/image/draw"

	"github.com/fashion-classifier/fashion/internal/datatest"
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
	dir := datatest.FashionMNISTDir(t)
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
	if !strings.Contains(errb.String(), "2 of 3 images") {
		t.Errorf("stderr %q does not say how many failed", errb.String())
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// writeGray writes an all-black 28×28 PNG to path and returns its bytes.
func writeGray(t *testing.T, path string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 28, 28))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestPredictDirectoryURLAndCSV: a directory contributes its image files
// (sorted, by extension), a URL is fetched, and -csv writes one row per
// listed class under a header.
func TestPredictDirectoryURLAndCSV(t *testing.T) {
	dir := t.TempDir()
	img := writeGray(t, filepath.Join(dir, "b.png"))
	writeGray(t, filepath.Join(dir, "A.PNG"))
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub.png"), 0o755) // a directory, not a file
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(img)
	}))
	defer srv.Close()
	url := srv.URL + "/shirt.png"

	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"predict", "-csv", "-top", "2", "-allow-fetch-cidr", "127.0.0.1", dir, url}, &out, &errb)
	if code != 0 {
		t.Fatalf("predict exited %d: %s", code, errb.String())
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatalf("output is not CSV: %v\n%s", err, out.String())
	}
	if len(rows) != 1+3*2 || strings.Join(rows[0], ",") != "file,rank,label,class_id,probability,in_distribution,error" {
		t.Fatalf("want a header and 2 rows for each of 3 images, got:\n%s", out.String())
	}
	wantFiles := []string{filepath.Join(dir, "A.PNG"), filepath.Join(dir, "b.png"), url}
	for i, row := range rows[1:] {
		if row[0] != wantFiles[i/2] || row[1] != strconv.Itoa(i%2+1) || (row[5] != "true" && row[5] != "false") || row[6] != "" {
			t.Errorf("row %d = %q, want file %s rank %d, in_distribution true or false (the embedded model has a detector) and no error", i+1, row, wantFiles[i/2], i%2+1)
		}
		if p, err := strconv.ParseFloat(row[4], 64); err != nil || p <= 0 || p > 1 {
			t.Errorf("row %d probability %q", i+1, row[4])
		}
	}

	// Without -allow-fetch-cidr the loopback URL is refused, as the
	// server refuses it, and the row says why.
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"predict", "-json", url}, &out, &errb); code == 0 {
		t.Error("predict fetched a loopback URL under the default policy")
	}
	if !strings.Contains(out.String(), "loopback") {
		t.Errorf("refusal does not say why: %s", out.String())
	}

	// An empty directory is an error row, not silence.
	out.Reset()
	if code := run(context.Background(), []string{"predict", t.TempDir()}, &out, &bytes.Buffer{}); code == 0 || !strings.Contains(out.String(), "no image files") {
		t.Errorf("empty directory: exit %d, output %q", code, out.String())
	}
}

// TestPredictTopIsValidatedLikeTheAPI: out-of-range -top is an error
// naming the range (the API answers 400), never silently clamped.
func TestPredictTopIsValidatedLikeTheAPI(t *testing.T) {
	img := filepath.Join(t.TempDir(), "x.png")
	writeGray(t, img)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-top", "0"}, "-top 0: want an integer from 1 to 10"},
		{[]string{"-top", "11"}, "-top 11: want an integer from 1 to 10"},
		{[]string{"-top", "-3"}, "-top -3: want an integer from 1 to 10"},
		{[]string{"-json", "-csv"}, "exclusive"},
	} {
		var out, errb bytes.Buffer
		args := append(append([]string{"predict"}, tc.args...), img)
		if code := run(context.Background(), args, &out, &errb); code == 0 || !strings.Contains(errb.String(), tc.want) || out.Len() != 0 {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want an error containing %q and no results", tc.args, code, errb.String(), out.String(), tc.want)
		}
	}
	got := predictJSON(t, "-top", "10", img)
	if len(got) != 1 || len(got[0].Top) != 10 {
		t.Errorf("-top 10: %+v, want 10 classes", got)
	}
}

// TestPredictStdin runs the command as a process (the test binary doubles
// as fashion, see TestMain) with an image on standard input.
func TestPredictStdin(t *testing.T) {
	img := writeGray(t, filepath.Join(t.TempDir(), "x.png"))
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "predict", "-json", "-")
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	cmd.Stdin = bytes.NewReader(img)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("predict - : %v", err)
	}
	var p prediction
	if err := json.Unmarshal(out, &p); err != nil || p.File != "-" || p.Label == "" || p.Error != "" {
		t.Errorf("predict - printed %q (%v), want one classification of file \"-\"", out, err)
	}
}

// TestPredictSaysNotSure: a handwritten digit the embedded model's detector
// marks out of distribution is flagged in the table, not just in -json.
func TestPredictSaysNotSure(t *testing.T) {
	digits, err := idx.LoadTest(filepath.Dir(datatest.SharedPath(t, "data/mnist-test/t10k-images-idx3-ubyte.gz")))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var files []string
	for i := range 20 {
		g := &image.Gray{Pix: digits.Images.Image(i), Stride: 28, Rect: image.Rect(0, 0, 28, 28)}
		var buf bytes.Buffer
		png.Encode(&buf, g)
		f := filepath.Join(dir, fmt.Sprintf("digit%02d.png", i))
		os.WriteFile(f, buf.Bytes(), 0o644)
		files = append(files, f)
	}
	res := predictJSON(t, files...)
	var out, errb bytes.Buffer
	if code := run(context.Background(), append([]string{"predict"}, files...), &out, &errb); code != 0 {
		t.Fatalf("predict exited %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	flagged := 0
	for i, r := range res {
		ood := r.InDistribution != nil && !*r.InDistribution
		if ood {
			flagged++
		}
		if says := strings.Contains(lines[i], "not sure"); says != ood {
			t.Errorf("%s: in_distribution %v, table line %q", filepath.Base(r.File), r.InDistribution != nil && *r.InDistribution, lines[i])
		}
	}
	if flagged == 0 {
		t.Error("the detector flags none of 20 handwritten digits")
	}
}
