package imageprep

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/imageprep/imagetest"
)

// heapAllocs returns the bytes allocated on the heap while f runs (the
// tests in this file do not run in parallel, so that is f's share).
func heapAllocs(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// mustPNG encodes p or fails the test.
func mustPNG(t testing.TB, p imagetest.PNG) []byte {
	t.Helper()
	data, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// pattern fills a PNG row with bytes that vary along x and y, so that
// encoders and filters see some structure.
func pattern(y int, row []byte) {
	for i := range row {
		row[i] = byte(i*7 + y*3)
	}
}

func TestPeakBytesFarBelowPodLimit(t *testing.T) {
	// The shipped Kubernetes manifest gives a pod 256 MiB; one image in
	// preparation must be a small part of that.
	if got := (Limits{}).PeakBytes(); got > 72<<20 {
		t.Errorf("PeakBytes at the defaults = %d MiB, want ≤ 72 MiB", got>>20)
	}
	if got := (Limits{MaxBytes: 8 << 20}).PeakBytes(); got != 8<<20+workBytes {
		t.Errorf("PeakBytes(8 MiB budget) = %d, want %d", got, 8<<20+workBytes)
	}
}

// TestHostilePNGs prepares the images that once took the server down and
// checks what each allocates against the stated bound.
func TestHostilePNGs(t *testing.T) {
	cases, err := imagetest.Hostile()
	if err != nil {
		t.Fatal(err)
	}
	bound := uint64((Limits{}).PeakBytes())
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			var g Input
			var err error
			n := heapAllocs(func() { g, err = Prepare(c.Data, Limits{}) })
			t.Logf("%d-byte file: allocated %.1f MiB (bound %.0f MiB), error %v", len(c.Data), float64(n)/(1<<20), float64(bound)/(1<<20), err)
			if n > bound {
				t.Errorf("Prepare allocated %d bytes, more than PeakBytes %d", n, bound)
			}
			switch c.Name {
			case "line-40000000x1-1bit", "rgba64-6324x6324":
				// Refused from the header: by the aspect ratio, and by
				// the byte budget (320 MB decoded).
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("error = %v, want ErrTooLarge", err)
				}
				if n > 1<<20 {
					t.Errorf("refusing allocated %d bytes, want < 1 MiB", n)
				}
			case "gray-6324x6324":
				if err != nil {
					t.Fatalf("Prepare: %v", err)
				}
				// 40 MB of decoded gray, the working image and little else.
				if n > 40_000_000+workBytes+2<<20 {
					t.Errorf("Prepare allocated %d bytes, want the decoded image plus at most %d", n, workBytes+2<<20)
				}
				// A dark square on light gray is trimmed to the square,
				// negated and levelled: the centre must be bright.
				if v := g.GrayAt(Side/2, Side/2).Y; v < 200 {
					t.Errorf("centre pixel = %d, want the bright object\n%s", v, ascii(g.Gray))
				}
			default:
				t.Fatalf("no expectation for case %q", c.Name)
			}
		})
	}
}

func TestDecodeAspectLimit(t *testing.T) {
	tests := []struct {
		w, h    int
		refused bool
	}{
		{28, 1, false}, {1, 28, false}, {29, 1, true}, {1, 29, true},
		{2800, 100, false}, {2801, 100, true}, {100, 2801, true}, {57, 2, true}, {56, 2, false},
	}
	for _, tt := range tests {
		data := mustPNG(t, imagetest.PNG{Width: tt.w, Height: tt.h, Depth: 8})
		_, _, err := Decode(data, Limits{})
		if got := errors.Is(err, ErrTooLarge); got != tt.refused {
			t.Errorf("%d×%d: error = %v, want refused = %v", tt.w, tt.h, err, tt.refused)
		}
		if tt.refused && !strings.Contains(err.Error(), "thinner than one") {
			t.Errorf("%d×%d: error %q does not say why", tt.w, tt.h, err)
		}
	}
}

// TestDecodeBytesCoversAllocations checks the header-only memory estimate
// against what each decoder really allocates, for every image type the
// decoders produce, so that the byte budget cannot be outrun.
func TestDecodeBytesCoversAllocations(t *testing.T) {
	const w, h = 1000, 700
	palette := make([]byte, 3*256)
	for i := range palette {
		palette[i] = byte(i)
	}
	pngs := []struct {
		name string
		p    imagetest.PNG
	}{
		{"gray1", imagetest.PNG{Depth: 1, ColorType: 0}},
		{"gray8", imagetest.PNG{Depth: 8, ColorType: 0}},
		{"gray16", imagetest.PNG{Depth: 16, ColorType: 0}},
		{"gray8 tRNS", imagetest.PNG{Depth: 8, ColorType: 0, TRNS: []byte{0, 7}}},
		{"gray16 tRNS", imagetest.PNG{Depth: 16, ColorType: 0, TRNS: []byte{0, 7}}},
		{"gray-alpha8", imagetest.PNG{Depth: 8, ColorType: 4}},
		{"gray-alpha16", imagetest.PNG{Depth: 16, ColorType: 4}},
		{"rgb8", imagetest.PNG{Depth: 8, ColorType: 2}},
		{"rgb8 tRNS", imagetest.PNG{Depth: 8, ColorType: 2, TRNS: []byte{0, 1, 0, 2, 0, 3}}},
		{"rgb16", imagetest.PNG{Depth: 16, ColorType: 2}},
		{"rgba8", imagetest.PNG{Depth: 8, ColorType: 6}},
		{"rgba16", imagetest.PNG{Depth: 16, ColorType: 6}},
		{"paletted2", imagetest.PNG{Depth: 2, ColorType: 3, Palette: palette[:12]}},
		{"paletted8", imagetest.PNG{Depth: 8, ColorType: 3, Palette: palette}},
		{"interlaced gray8", imagetest.PNG{Depth: 8, ColorType: 0, Interlaced: true}},
		{"interlaced rgba16", imagetest.PNG{Depth: 16, ColorType: 6, Interlaced: true}},
	}
	type input struct {
		name string
		data []byte
	}
	var inputs []input
	for _, c := range pngs {
		c.p.Width, c.p.Height, c.p.Row = w, h, pattern
		inputs = append(inputs, input{"png " + c.name, mustPNG(t, c.p)})
	}
	gray := image.NewGray(image.Rect(0, 0, w, h))
	for i := range gray.Pix {
		gray.Pix[i] = byte(i % 251)
	}
	pal := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.White, color.Black, color.Gray{128}})
	for i := range pal.Pix {
		pal.Pix[i] = byte(i % 3)
	}
	colour := testImage(w, h)
	inputs = append(inputs,
		input{"jpeg gray", encode(t, "jpeg", gray)},
		input{"jpeg 4:2:0", encode(t, "jpeg", colour)},
		input{"gif", encode(t, "gif", pal)},
		input{"gif interlaced", interlacedGIF(t, encode(t, "gif", pal))},
		input{"bmp 8-bit", encode(t, "bmp", pal)},
		input{"bmp 24-bit", encode(t, "bmp", colour)},
	)
	for _, name := range []string{"video-001.q50.444.progressive.jpeg", "video-001.q50.420.progressive.jpeg",
		"video-001.cmyk.jpeg", "video-001.rgb.jpeg", "tiny-lossless.webp", "tiny-lossy.webp"} {
		inputs = append(inputs, input{name, readTestdata(t, name)})
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			format, err := Sniff(in.data)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := codecs[format].config(bytes.NewReader(in.data))
			if err != nil {
				t.Fatal(err)
			}
			need := decodeBytes(format, cfg, in.data)
			var img image.Image
			got := heapAllocs(func() { img, _, err = Decode(in.data, Limits{}) })
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			t.Logf("%T %d×%d: estimated %d bytes, allocated %d", img, cfg.Width, cfg.Height, need, got)
			if got > uint64(need) {
				t.Errorf("Decode allocated %d bytes, more than the estimate of %d", got, need)
			}
			// The estimate must also be close enough to be a useful budget.
			if uint64(need) > 3*got+decoderOverhead {
				t.Errorf("estimate %d is more than 3× the %d bytes allocated", need, got)
			}
		})
	}
}

// interlacedGIF sets the interlace flag of a GIF's first image descriptor:
// the decoder then reorders the rows into a second buffer (the picture
// comes out scrambled, which does not matter here).
func interlacedGIF(t *testing.T, data []byte) []byte {
	t.Helper()
	data = bytes.Clone(data)
	i := 13
	if data[10]&0x80 != 0 {
		i += 3 << (data[10]&7 + 1) // the global colour table
	}
	for data[i] == 0x21 { // extensions: label, then sub-blocks up to a 0
		i += 2
		for data[i] != 0 {
			i += int(data[i]) + 1
		}
		i++
	}
	if data[i] != 0x2c {
		t.Fatalf("no image descriptor at %d", i)
	}
	data[i+9] |= 0x40
	return data
}

// opaque hides an image's concrete type, so that toGray takes its generic
// path through At.
type opaque struct{ image.Image }

func TestGrayRowsFastPathsMatchAt(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	r := image.Rect(-3, 5, 34, 26) // odd sizes, bounds away from the origin
	fill := func(pix []uint8) {
		for i := range pix {
			pix[i] = uint8(rng.IntN(256))
		}
	}
	gray, gray16 := image.NewGray(r), image.NewGray16(r)
	rgba, nrgba := image.NewRGBA(r), image.NewNRGBA(r)
	rgba64, nrgba64 := image.NewRGBA64(r), image.NewNRGBA64(r)
	cmyk := image.NewCMYK(r)
	pal := image.NewPaletted(r, color.Palette{color.Black, color.NRGBA{200, 10, 40, 128}, color.White, color.Transparent})
	for _, pix := range [][]uint8{gray.Pix, gray16.Pix, nrgba.Pix, nrgba64.Pix, cmyk.Pix} {
		fill(pix)
	}
	// Premultiplied colours must not exceed their alpha.
	for i := 0; i < len(rgba.Pix); i += 4 {
		a := uint8(rng.IntN(256))
		rgba.Pix[i+3] = a
		for c := range 3 {
			rgba.Pix[i+c] = uint8(rng.IntN(int(a) + 1))
		}
	}
	for i := 0; i < len(rgba64.Pix); i += 8 {
		a := rng.IntN(0x10000)
		rgba64.Pix[i+6], rgba64.Pix[i+7] = uint8(a>>8), uint8(a)
		for c := range 3 {
			v := rng.IntN(a + 1)
			rgba64.Pix[i+2*c], rgba64.Pix[i+2*c+1] = uint8(v>>8), uint8(v)
		}
	}
	for i := range pal.Pix {
		pal.Pix[i] = uint8(rng.IntN(len(pal.Palette)))
	}
	var ycbcr []image.Image
	for _, ratio := range []image.YCbCrSubsampleRatio{image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio411} {
		m := image.NewYCbCr(r, ratio)
		fill(m.Y)
		fill(m.Cb)
		fill(m.Cr)
		ycbcr = append(ycbcr, m)
	}
	// The paths added for the decoders' wide and exotic types give exactly
	// what At gives; the 8-bit RGBA and NRGBA paths round once where At
	// rounds twice, so they may differ by one level.
	for _, tt := range []struct {
		img  image.Image
		diff int
	}{{gray, 0}, {gray16, 0}, {rgba64, 0}, {nrgba64, 0}, {cmyk, 0}, {pal, 0}, {rgba, 1}, {nrgba, 1}} {
		for _, bg := range []uint8{0, 255, 131} {
			got, want := toGray(tt.img, bg), toGray(opaque{tt.img}, bg)
			if got.Rect != want.Rect {
				t.Fatalf("%T: bounds %v, want %v", tt.img, got.Rect, want.Rect)
			}
			for i := range got.Pix {
				if d := int(got.Pix[i]) - int(want.Pix[i]); d > tt.diff || d < -tt.diff {
					t.Fatalf("%T on background %d: pixel %d = %d, At gives %d", tt.img, bg, i, got.Pix[i], want.Pix[i])
				}
			}
		}
	}
	for _, m := range ycbcr {
		m := m.(*image.YCbCr)
		g := toGray(m, 0)
		for y := range r.Dy() {
			if row := g.Pix[y*g.Stride : y*g.Stride+r.Dx()]; !bytes.Equal(row, m.Y[m.YOffset(r.Min.X, r.Min.Y+y):][:r.Dx()]) {
				t.Fatalf("YCbCr %v row %d is not the Y plane", m.SubsampleRatio, y)
			}
		}
	}
	// A YCbCr image's gray is its Y plane, not a round trip through RGB;
	// with alpha, Y is composited like NRGBA's luma.
	a := image.NewNYCbCrA(r, image.YCbCrSubsampleRatio420)
	fill(a.Y)
	fill(a.A)
	g := toGray(a, 200)
	for y := range r.Dy() {
		for x := range r.Dx() {
			yv, av := uint32(a.Y[a.YOffset(r.Min.X+x, r.Min.Y+y)]), uint32(a.A[a.AOffset(r.Min.X+x, r.Min.Y+y)])
			if want := uint8((yv*av + 200*(255-av) + 127) / 255); g.Pix[y*g.Stride+x] != want {
				t.Fatalf("NYCbCrA pixel (%d,%d) = %d, want %d", x, y, g.Pix[y*g.Stride+x], want)
			}
		}
	}
}

func TestToGrayBoxReduction(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, size := range []image.Point{{2500, 1031}, {3, 5003}, {9000, 7}, {2048, 2048}, {2047, 3}} {
		src := image.NewGray(image.Rect(0, 0, size.X, size.Y))
		for i := range src.Pix {
			src.Pix[i] = uint8(rng.IntN(256))
		}
		f := max(1, max(size.X, size.Y)/workSide)
		got := toGray(src, 255)
		ow, oh := (size.X+f-1)/f, (size.Y+f-1)/f
		if got.Rect != image.Rect(0, 0, ow, oh) || ow >= 2*workSide || oh >= 2*workSide {
			t.Fatalf("%v: bounds %v, want %d×%d (factor %d), under %d per edge", size, got.Rect, ow, oh, f, 2*workSide)
		}
		for oy := range oh {
			for ox := range ow {
				sum, n := 0, 0
				for y := oy * f; y < min(oy*f+f, size.Y); y++ {
					for x := ox * f; x < min(ox*f+f, size.X); x++ {
						sum += int(src.Pix[y*src.Stride+x])
						n++
					}
				}
				if want := uint8((sum + n/2) / n); got.Pix[oy*got.Stride+ox] != want {
					t.Fatalf("%v: pixel (%d,%d) = %d, want the box mean %d", size, ox, oy, got.Pix[oy*got.Stride+ox], want)
				}
			}
		}
	}
}

// TestToInputWorkingMemory checks that converting a huge decoded image
// allocates only the bounded working image, whatever the input's type and
// shape: no full-resolution copy.
func TestToInputWorkingMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates ~100 MB of test images")
	}
	imgs := map[string]func() image.Image{
		"gray 40000000×1":  func() image.Image { return image.NewGray(image.Rect(0, 0, 40_000_000, 1)) },
		"gray16 1×4000000": func() image.Image { return image.NewGray16(image.Rect(0, 0, 1, 4_000_000)) },
		"rgba64 2600×2600": func() image.Image {
			m := image.NewRGBA64(image.Rect(0, 0, 2600, 2600))
			for i := range m.Pix {
				m.Pix[i] = 0xff
			}
			return m
		},
		"cmyk 4000×3000": func() image.Image { return image.NewCMYK(image.Rect(0, 0, 4000, 3000)) },
		"paletted 6324²": func() image.Image {
			return image.NewPaletted(image.Rect(0, 0, 6324, 6324), color.Palette{color.White, color.Black})
		},
		"ycbcr 6000×4000":   func() image.Image { return image.NewYCbCr(image.Rect(0, 0, 6000, 4000), image.YCbCrSubsampleRatio420) },
		"nrgba64 3000×2000": func() image.Image { return image.NewNRGBA64(image.Rect(0, 0, 3000, 2000)) },
	}
	for name, mk := range imgs {
		t.Run(name, func(t *testing.T) {
			img := mk()
			var g Input
			n := heapAllocs(func() { g = ToInput(img) })
			t.Logf("ToInput allocated %d bytes", n)
			if n > workBytes {
				t.Errorf("ToInput allocated %d bytes, more than workBytes %d", n, workBytes)
			}
			if g.Rect != image.Rect(0, 0, Side, Side) {
				t.Errorf("bounds %v, want 28×28", g.Rect)
			}
		})
	}
}
