package imageprep

import (
	"errors"
	"image"
	"testing"
)

// fuzzMaxPixels keeps fuzzed images small so that each run stays fast; the
// cap logic itself is the same for any value.
const fuzzMaxPixels = 1 << 16

// addSeeds adds one small valid file per format, and a few near misses.
func addSeeds(f *testing.F) {
	img := testImage(9, 7)
	for _, format := range []string{"png", "jpeg", "gif", "bmp"} {
		data := encode(f, format, img)
		f.Add(data)
		f.Add(data[:len(data)/2])
	}
	f.Add(readTestdata(f, "tiny-lossless.webp"))
	f.Add(readTestdata(f, "tiny-lossy.webp"))
	f.Add(pngHeaderOnly(10_000, 10_000))
	f.Add([]byte("GIF89a/*\x00\x00\x00\x00*/=1;"))
	f.Add([]byte{})
}

func FuzzDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		img, format, err := Decode(data, Limits{MaxPixels: fuzzMaxPixels})
		if err != nil {
			if img != nil {
				t.Fatalf("Decode returned an image with error %v", err)
			}
			if !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode error %v wraps none of the package's sentinels", err)
			}
			return
		}
		if sniffed, _ := Sniff(data); sniffed != format {
			t.Fatalf("Decode format %q, Sniff says %q", format, sniffed)
		}
		if b := img.Bounds(); b.Empty() || b.Dx()*b.Dy() > fuzzMaxPixels {
			t.Fatalf("Decode returned bounds %v under a cap of %d pixels", b, fuzzMaxPixels)
		}
	})
}

func FuzzPrepare(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Prepare(data, Limits{MaxPixels: fuzzMaxPixels})
		if err != nil {
			if g.Gray != nil {
				t.Fatalf("Prepare returned an image with error %v", err)
			}
			return
		}
		if g.Rect != image.Rect(0, 0, Side, Side) || len(g.Pix) != Side*Side {
			t.Fatalf("Prepare returned bounds %v with %d pixels", g.Rect, len(g.Pix))
		}
		again, err := Prepare(data, Limits{MaxPixels: fuzzMaxPixels})
		if err != nil || string(again.Pix) != string(g.Pix) || again.DatasetLike != g.DatasetLike {
			t.Fatalf("Prepare is not deterministic (second error %v)", err)
		}
	})
}
