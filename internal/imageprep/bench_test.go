package imageprep

import (
	"testing"
)

// BenchmarkPrepare measures the per-image cost the server pays: a dataset
// PNG (the common API call) and a product photo taking the full pipeline.
func BenchmarkPrepare(b *testing.B) {
	src := bootShape()
	inputs := []struct {
		name string
		data []byte
	}{
		{"png-28x28", encode(b, "png", src)},
		{"jpeg-300x400", productPhoto(b, src, 300, 400, 10)},
		{"jpeg-1200x1600", productPhoto(b, src, 1200, 1600, 40)},
	}
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Prepare(in.data, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkToInput measures the conversion alone on a decoded photo.
func BenchmarkToInput(b *testing.B) {
	img, _, err := Decode(productPhoto(b, bootShape(), 1200, 1600, 40), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	var sink Input
	b.ReportAllocs()
	for b.Loop() {
		sink = ToInput(img)
	}
	_ = sink
}
