package imageprep

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"testing"
)

// scene paints a synthetic w×h photo: background(x, y) everywhere, then
// object(x, y) (ok false for "not the object") inside rect.
func scene(w, h int, background func(x, y int) color.RGBA, rect image.Rectangle, object func(x, y int) (color.RGBA, bool)) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := background(x, y)
			if (image.Point{x, y}).In(rect) {
				if oc, ok := object(x, y); ok {
					c = oc
				}
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

func gray(v float64) color.RGBA {
	u := uint8(math.Round(min(max(v, 0), 255)))
	return color.RGBA{u, u, u, 255}
}

// boot is an ankle-boot silhouette filling rect: a shaft on the left 45%
// of the upper 60%, the foot below; fill gives its colour.
func boot(rect image.Rectangle, fill func(x, y int) color.RGBA) func(x, y int) (color.RGBA, bool) {
	return func(x, y int) (color.RGBA, bool) {
		u := float64(x-rect.Min.X) / float64(rect.Dx())
		v := float64(y-rect.Min.Y) / float64(rect.Dy())
		if v < 0.6 && u > 0.45 {
			return color.RGBA{}, false
		}
		return fill(x, y), true
	}
}

// jpegRoundTrip adds real JPEG noise.
func jpegRoundTrip(t *testing.T, img image.Image, quality int) image.Image {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality}); err != nil {
		t.Fatal(err)
	}
	out, _, err := Decode(buf.Bytes(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFindObject(t *testing.T) {
	const w, h = 400, 300
	centre := image.Rect(140, 60, 260, 240)
	white := func(x, y int) color.RGBA { return gray(245) }
	dark := func(x, y int) color.RGBA { return gray(40) }
	tests := []struct {
		name string
		img  image.Image
		want image.Rectangle
	}{
		{"dark boot on white", scene(w, h, white, centre, boot(centre, dark)), centre},
		{"gradient background", scene(w, h, func(x, y int) color.RGBA { return gray(250 - 110*float64(x)/w) },
			centre, boot(centre, dark)), centre},
		{"vertical gradient with vignetting", scene(w, h, func(x, y int) color.RGBA {
			dx, dy := float64(x-w/2)/w, float64(y-h/2)/h
			return gray(235 - 60*float64(y)/h - 180*(dx*dx+dy*dy))
		}, centre, boot(centre, func(x, y int) color.RGBA { return color.RGBA{120, 40, 30, 255} })), centre},
		{"shadow along the bottom edge", scene(w, h, func(x, y int) color.RGBA {
			// A soft shadow darkening the bottom quarter to 70%.
			s := 1 - 0.3*min(max((float64(y)-0.7*h)/(0.2*h), 0), 1)
			return gray(240 * s)
		}, centre, boot(centre, dark)), centre},
		{"soft cast shadow beside the object", scene(w, h, func(x, y int) color.RGBA {
			// 75% of the light in (300…380)×(40…260), fading over 20 px (a
			// hard-edged shadow this dark reads as an outline: part of the object).
			ramp := func(v, lo, hi float64) float64 { return min(max(min(v-lo, hi-v)/20, 0), 1) }
			return gray(240 * (1 - 0.25*ramp(float64(x), 300, 380)*ramp(float64(y), 40, 260)))
		}, centre, boot(centre, dark)), centre},
		{"white sneaker on white", scene(w, h, white, centre, func(x, y int) (color.RGBA, bool) {
			// White with a thin gray outline and seams, as real white shoes have.
			in := func(x, y int) bool { _, ok := boot(centre, dark)(x, y); return ok && (image.Point{x, y}).In(centre) }
			if !in(x, y) {
				return color.RGBA{}, false
			}
			if !in(x-3, y) || !in(x+3, y) || !in(x, y-3) || !in(x, y+3) || (y-centre.Min.Y)%24 < 2 {
				return gray(185), true
			}
			return gray(250), true
		}), centre},
		{"off-centre in a corner", scene(w, h, white, image.Rect(12, 180, 100, 290), boot(image.Rect(12, 180, 100, 290), dark)),
			image.Rect(12, 180, 100, 290)},
		{"colour on colour of the same brightness", scene(w, h, func(x, y int) color.RGBA { return color.RGBA{200, 120, 120, 255} },
			centre, boot(centre, func(x, y int) color.RGBA { return color.RGBA{110, 150, 150, 255} })), centre},
		{"light object on a dark floor", scene(w, h, func(x, y int) color.RGBA { return gray(50 + 20*float64(x)/w) },
			centre, boot(centre, func(x, y int) color.RGBA { return gray(200) })), centre},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, noisy := range []bool{false, true} {
				img := tt.img
				if noisy {
					img = jpegRoundTrip(t, img, 70)
				}
				obj, ok := FindObject(img)
				if !ok {
					t.Fatalf("jpeg %v: no object found", noisy)
				}
				// Every edge within 3% of the image's longest side.
				tol := 3 * max(w, h) / 100
				d := []int{obj.Rect.Min.X - tt.want.Min.X, obj.Rect.Min.Y - tt.want.Min.Y, obj.Rect.Max.X - tt.want.Max.X, obj.Rect.Max.Y - tt.want.Max.Y}
				for _, e := range d {
					if e < -tol || e > tol {
						t.Errorf("jpeg %v: crop %v, want %v ±%d px", noisy, obj.Rect, tt.want, tol)
						break
					}
				}
				// The model's input: object centred, background black.
				in := ToInput(img)
				if in.Rect != image.Rect(0, 0, Side, Side) {
					t.Fatalf("input bounds %v", in.Rect)
				}
				if in.DatasetLike {
					t.Errorf("jpeg %v: a photo reported as dataset-like (it would be routed to the benchmark model)", noisy)
				}
				for _, p := range []image.Point{{0, 0}, {27, 0}, {0, 27}, {27, 27}} {
					if v := in.GrayAt(p.X, p.Y).Y; v > 8 {
						t.Errorf("jpeg %v: input corner %v = %d, want black\n%s", noisy, p, v, ascii(in.Gray))
					}
				}
				// The crop is taller than wide, so the object spans the
				// full height: the middle column is lit near top and bottom.
				if in.GrayAt(Side/2-4, 1).Y < 24 || in.GrayAt(Side/2, Side-2).Y < 24 {
					t.Errorf("jpeg %v: object does not span the input's height\n%s", noisy, ascii(in.Gray))
				}
			}
		})
	}
}

func TestFindObjectNothing(t *testing.T) {
	for name, img := range map[string]image.Image{
		"uniform":  scene(200, 200, func(x, y int) color.RGBA { return gray(230) }, image.Rectangle{}, nil),
		"gradient": scene(200, 200, func(x, y int) color.RGBA { return gray(100 + float64(x+y)/4) }, image.Rectangle{}, nil),
		"tiny":     image.NewRGBA(image.Rect(0, 0, 4, 4)),
		"empty":    image.NewRGBA(image.Rect(0, 0, 0, 0)),
	} {
		if obj, ok := FindObject(img); ok {
			t.Errorf("%s: found an object at %v in an image without one", name, obj.Rect)
		}
	}
}
