package chart

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"strings"
	"testing"

	"gonum.org/v1/plot"

	"github.com/fashion-classifier/fashion/internal/eval"
)

// decode decodes a PNG and checks its size.
func decode(t *testing.T, b []byte, w, h int) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("output is not a PNG: %v", err)
	}
	if got := img.Bounds().Size(); got != image.Pt(w, h) {
		t.Fatalf("image size = %v, want %dx%d", got, w, h)
	}
	return img
}

// countColor returns how many pixels of img are exactly c.
func countColor(img image.Image, c color.RGBA) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if color.RGBAModel.Convert(img.At(x, y)) == c {
				n++
			}
		}
	}
	return n
}

func TestConfusionPNG(t *testing.T) {
	tests := []struct {
		name  string
		c     func() *eval.Confusion
		title string
	}{
		{"fashion 10 classes", sampleConfusion, "Fashion-MNIST test set — accuracy 0.9393"},
		{"no title", sampleConfusion, ""},
		{"long title", sampleConfusion, "fashion-mnist (mobilenetv3-small): accuracy 0.8950 on 10000 test images from /usr/share/datasets/fashion-mnist"},
		{"one class", func() *eval.Confusion {
			c := eval.NewConfusion([]string{"only"})
			c.Add(0, 0)
			return c
		}, "one class"},
		{"two classes", func() *eval.Confusion {
			c := eval.NewConfusion([]string{"cat", "dog"})
			c.Counts = [][]int{{40, 2}, {7, 51}}
			return c
		}, "two classes"},
		{"large counts", func() *eval.Confusion {
			c := sampleConfusion()
			for _, row := range c.Counts {
				for j := range row {
					row[j] *= 60
				}
			}
			return c
		}, "Fashion-MNIST training set"},
		{"many classes", func() *eval.Confusion {
			names := make([]string, 30)
			for i := range names {
				names[i] = "class number " + string(rune('A'+i%26))
			}
			c := eval.NewConfusion(names)
			for i := range names {
				c.Counts[i][i] = 100 + i
				c.Counts[i][(i+1)%30] = 7
			}
			return c
		}, "thirty classes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := ConfusionPNG(&buf, tt.c(), tt.title); err != nil {
				t.Fatalf("ConfusionPNG: %v", err)
			}
			img := decode(t, buf.Bytes(), confusionWidth, confusionHeight)
			saveExample(t, buf.Bytes())
			// The largest count is filled with the darkest colour of the
			// scale, and a cell's worth of it must be visible.
			if n := countColor(img, blues[len(blues)-1]); n < 200 {
				t.Errorf("only %d pixels have the darkest scale colour; the maximum cell is missing", n)
			}
		})
	}
}

// TestConfusionPNGDeterministic checks that the same matrix always gives
// the same bytes, and that the bytes do depend on the counts and the title.
func TestConfusionPNGDeterministic(t *testing.T) {
	var a, a2, b, c bytes.Buffer
	m := sampleConfusion()
	if err := ConfusionPNG(&a, m, "title"); err != nil {
		t.Fatal(err)
	}
	if err := ConfusionPNG(&a2, sampleConfusion(), "title"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), a2.Bytes()) {
		t.Error("two renderings of the same matrix differ")
	}
	m.Counts[6][0]++
	if err := ConfusionPNG(&b, m, "title"); err != nil {
		t.Fatal(err)
	}
	if err := ConfusionPNG(&c, m, "other title"); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("changing a count did not change the image")
	}
	if bytes.Equal(b.Bytes(), c.Bytes()) {
		t.Error("changing the title did not change the image")
	}
}

func TestConfusionPNGErrors(t *testing.T) {
	tests := []struct {
		name string
		c    *eval.Confusion
		want string
	}{
		{"nil", nil, "nil"},
		{"no classes", eval.NewConfusion(nil), "no classes"},
		{"no samples", eval.NewConfusion([]string{"a", "b"}), "no samples"},
		{"missing row", &eval.Confusion{Classes: []string{"a", "b"}, Counts: [][]int{{1, 0}}}, "1 rows for 2 classes"},
		{"short row", &eval.Confusion{Classes: []string{"a", "b"}, Counts: [][]int{{1, 0}, {1}}}, `row 1 ("b") has 1 columns`},
		{"negative", &eval.Confusion{Classes: []string{"a", "b"}, Counts: [][]int{{1, -2}, {0, 1}}}, "negative count -2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := ConfusionPNG(&buf, tt.c, "t")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ConfusionPNG error = %v, want one containing %q", err, tt.want)
			}
			if buf.Len() != 0 {
				t.Errorf("ConfusionPNG wrote %d bytes despite the error", buf.Len())
			}
		})
	}
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

var errWrite = &writeError{}

type writeError struct{}

func (*writeError) Error() string { return "disk full" }

func TestWriteErrors(t *testing.T) {
	if err := ConfusionPNG(failWriter{}, sampleConfusion(), ""); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("ConfusionPNG to failing writer: error = %v, want the write error", err)
	}
	if err := CurvesPNG(failWriter{}, sampleHistory(), ""); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("CurvesPNG to failing writer: error = %v, want the write error", err)
	}
}

func TestCurvesPNG(t *testing.T) {
	nan := math.NaN()
	noLR := sampleHistory()
	for i := range noLR {
		noLR[i].LR = 0
	}
	sparseTest := sampleHistory()
	for i := range sparseTest {
		if i%5 != 4 {
			sparseTest[i].TestAcc = nan
		}
	}
	long := make([]Epoch, 200)
	for i := range long {
		long[i] = Epoch{Epoch: i + 1, TrainLoss: 1 / float64(i+1), TrainAcc: 0.9, TestAcc: 0.89, LR: 0.01}
	}
	tests := []struct {
		name    string
		history []Epoch
		title   string
	}{
		{"thirty epochs", sampleHistory(), "vgg · 30 epochs · SGD + one-cycle"},
		{"no title", sampleHistory(), ""},
		{"long title", sampleHistory(), strings.Repeat("a very long title for training curves ", 6)},
		{"no learning rate", noLR, "training"},
		{"one epoch", []Epoch{{Epoch: 1, TrainLoss: 0.7, TrainAcc: 0.8, TestAcc: 0.85, LR: 0.1}}, "one"},
		{"test measured every fifth epoch", sparseTest, "sparse"},
		{"only loss", []Epoch{{Epoch: 1, TrainLoss: 2, TrainAcc: nan, TestAcc: nan}, {Epoch: 2, TrainLoss: 1, TrainAcc: nan, TestAcc: nan}}, "loss"},
		{"constant values", []Epoch{{Epoch: 3, TrainLoss: 1, TrainAcc: 1, TestAcc: 1}, {Epoch: 4, TrainLoss: 1, TrainAcc: 1, TestAcc: 1}}, "flat"},
		{"many epochs", long, "long"},
		{"huge values", []Epoch{{Epoch: 1, TrainLoss: 1e300, TrainAcc: -1e300}, {Epoch: 2, TrainLoss: -1e300, TrainAcc: 1e300}}, "huge"},
		{"huge epochs", []Epoch{{Epoch: 1 << 60, TrainLoss: 1}, {Epoch: 1<<60 + 1, TrainLoss: 2}}, "huge epochs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := CurvesPNG(&buf, tt.history, tt.title); err != nil {
				t.Fatalf("CurvesPNG: %v", err)
			}
			decode(t, buf.Bytes(), curvesWidth, curvesHeight)
			saveExample(t, buf.Bytes())
		})
	}
}

// TestCurvesPNGDeterministic checks that the same history always gives the
// same bytes, and that the bytes do depend on the history.
func TestCurvesPNGDeterministic(t *testing.T) {
	var a, b, c bytes.Buffer
	if err := CurvesPNG(&a, sampleHistory(), "t"); err != nil {
		t.Fatal(err)
	}
	if err := CurvesPNG(&b, sampleHistory(), "t"); err != nil {
		t.Fatal(err)
	}
	h := sampleHistory()
	h[3].TestAcc += 0.01
	if err := CurvesPNG(&c, h, "t"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two renderings of the same history differ")
	}
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Error("changing a test accuracy did not change the image")
	}
}

func TestCurvesPNGShowsSeries(t *testing.T) {
	h := sampleHistory()
	var buf bytes.Buffer
	if err := CurvesPNG(&buf, h, "t"); err != nil {
		t.Fatal(err)
	}
	img := decode(t, buf.Bytes(), curvesWidth, curvesHeight)
	for _, c := range []struct {
		name string
		col  color.RGBA
	}{{"loss/train", blue}, {"test", orange}, {"learning rate", green}} {
		if n := countColor(img, c.col); n < 100 {
			t.Errorf("%s curve colour covers only %d pixels", c.name, n)
		}
	}
	for i := range h {
		h[i].LR = 0
	}
	buf.Reset()
	if err := CurvesPNG(&buf, h, "t"); err != nil {
		t.Fatal(err)
	}
	img = decode(t, buf.Bytes(), curvesWidth, curvesHeight)
	if n := countColor(img, green); n != 0 {
		t.Errorf("learning-rate panel drawn (%d green pixels) for a history without learning rates", n)
	}
}

func TestCurvesPNGErrors(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name    string
		history []Epoch
		want    string
	}{
		{"nil", nil, "empty"},
		{"empty", []Epoch{}, "empty"},
		{"repeated epoch", []Epoch{{Epoch: 1, TrainLoss: 1}, {Epoch: 1, TrainLoss: 1}}, "entry 1 is epoch 1 after epoch 1"},
		{"decreasing", []Epoch{{Epoch: 2, TrainLoss: 1}, {Epoch: 1, TrainLoss: 1}}, "not in epoch order"},
		{"nothing finite", []Epoch{{Epoch: 1, TrainLoss: nan, TrainAcc: math.Inf(1), TestAcc: nan, LR: 0.1}}, "no finite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := CurvesPNG(&buf, tt.history, "t")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CurvesPNG error = %v, want one containing %q", err, tt.want)
			}
			if buf.Len() != 0 {
				t.Errorf("CurvesPNG wrote %d bytes despite the error", buf.Len())
			}
		})
	}
}

// tickLabels returns the labels of the major ticks.
func tickLabels(ticks []plot.Tick) []string {
	var s []string
	for _, t := range ticks {
		if !t.IsMinor() {
			s = append(s, t.Label)
		}
	}
	return s
}

func TestNiceTicks(t *testing.T) {
	tests := []struct {
		lo, hi float64
		want   string
	}{
		{0.8, 0.965, "0.800 0.825 0.850 0.875 0.900 0.925 0.950"},
		{0.45, 1.15, "0.5 0.6 0.7 0.8 0.9 1.0 1.1"},
		{0, 0.1, "0.00 0.02 0.04 0.06 0.08 0.10"},
		{-1, 1, "-1.00 -0.75 -0.50 -0.25 0.00 0.25 0.50 0.75 1.00"},
		{0.45, 0.46, "0.450 0.452 0.454 0.456 0.458 0.460"},
		{1, 1, ""},
		{1e20, 1e20 + 16384, "1e+20 1.0000000000000002e+20"},
		{5e-324, 1e-323, "5e-324 1e-323"},
		{0, 1000, "0 200 400 600 800 1000"},
		{1e-5, 6e-5, "0.00001 0.00002 0.00003 0.00004 0.00005 0.00006"},
	}
	for _, tt := range tests {
		got := strings.Join(tickLabels(niceTicks{}.Ticks(tt.lo, tt.hi)), " ")
		if got != tt.want {
			t.Errorf("niceTicks(%v, %v) = %q, want %q", tt.lo, tt.hi, got, tt.want)
		}
	}
}

func TestIntegerTicks(t *testing.T) {
	tests := []struct {
		lo, hi float64
		want   string
	}{
		{1, 30, "5 10 15 20 25 30"},
		{1, 3, "1 2 3"},
		{0.5, 1.5, "1"},
		{1, 10, "2 4 6 8 10"},
		{1, 12, "2 4 6 8 10 12"},
		{1, 200, "50 100 150 200"},
		{1, 5000, "1000 2000 3000 4000 5000"},
		{1, 6, "1 2 3 4 5 6"},
		{1, 7, "1 2 3 4 5 6 7"},
		{1, 8, "2 4 6 8"},
		{1.2, 1.8, ""},
		{-1e308, 1e308, "-1e+308 1e+308"},
		{1e17, 1e17 + 16, "1e+17 1.0000000000000002e+17"},
	}
	for _, tt := range tests {
		got := strings.Join(tickLabels(integerTicks{}.Ticks(tt.lo, tt.hi)), " ")
		if got != tt.want {
			t.Errorf("integerTicks(%v, %v) = %q, want %q", tt.lo, tt.hi, got, tt.want)
		}
	}
}

// FuzzTicks checks that the tickers terminate quickly, stay within the
// axis range and keep their values increasing for any axis range.
func FuzzTicks(f *testing.F) {
	f.Add(0.0, 1.0)
	f.Add(1.0, 30.0)
	f.Add(1e20, 1e20+16384)
	f.Add(-1e308, 1e308)
	f.Add(1e17, 1e17+1)
	f.Add(5e-324, 1e-323)
	f.Fuzz(func(t *testing.T, lo, hi float64) {
		for name, ticker := range map[string]plot.Ticker{"nice": niceTicks{}, "integer": integerTicks{}} {
			ticks := ticker.Ticks(lo, hi)
			if len(ticks) > maxTicks {
				t.Fatalf("%s ticks(%v, %v): %d ticks", name, lo, hi, len(ticks))
			}
			for i, tk := range ticks {
				if !(tk.Value >= lo-(hi-lo)*1e-6 && tk.Value <= hi+(hi-lo)*1e-6) {
					t.Fatalf("%s ticks(%v, %v): tick %v outside the range", name, lo, hi, tk.Value)
				}
				if i > 0 && !(tk.Value > ticks[i-1].Value) {
					t.Fatalf("%s ticks(%v, %v) not increasing: %v", name, lo, hi, ticks)
				}
			}
		}
	})
}

func TestBluesAt(t *testing.T) {
	tests := []struct {
		t    float64
		want color.RGBA
	}{
		{-1, blues[0]},
		{math.NaN(), blues[0]},
		{0, blues[0]},
		{1, blues[8]},
		{2, blues[8]},
		{0.5, blues[4]},
		{1.0 / 16, color.RGBA{0xeb, 0xf3, 0xfb, 0xff}}, // halfway between blues[0] and blues[1]
	}
	for _, tt := range tests {
		if got := bluesAt(tt.t); got != tt.want {
			t.Errorf("bluesAt(%v) = %v, want %v", tt.t, got, tt.want)
		}
	}
}

func TestIsDark(t *testing.T) {
	for i, want := range []bool{false, false, false, false, true, true, true, true, true} {
		if got := isDark(blues[i]); got != want {
			t.Errorf("isDark(blues[%d]) = %v, want %v", i, got, want)
		}
	}
}

// FuzzCurvesPNG checks that any history, however odd its numbers, yields
// either an error or a decodable PNG, and never a panic or a hang.
func FuzzCurvesPNG(f *testing.F) {
	f.Add(3, 1.0, 0.5, 0.8, 0.1)
	f.Add(1, math.Inf(1), math.NaN(), 1e308, -1e-300)
	f.Add(-5, -1e308, 1e308, 0.0, 5e-324)
	f.Add(1<<40, 1e15, 1e15+1, 1e15+2, 0.0)
	f.Fuzz(func(t *testing.T, first int, a, b, c, d float64) {
		h := []Epoch{
			{Epoch: first, TrainLoss: a, TrainAcc: b, TestAcc: c, LR: d},
			{Epoch: first + 1, TrainLoss: b, TrainAcc: c, TestAcc: d, LR: a},
			{Epoch: first + 2, TrainLoss: c, TrainAcc: d, TestAcc: a, LR: b},
		}
		var buf bytes.Buffer
		if err := CurvesPNG(&buf, h, "fuzz"); err != nil {
			return
		}
		if _, err := png.Decode(&buf); err != nil {
			t.Fatalf("CurvesPNG(%v) wrote an undecodable PNG: %v", h, err)
		}
	})
}
