package nn

// Exported entry points to the vectorised per-channel kernels, for
// inference engines outside this package (internal/onnx) that lay out
// activations the same way (NHWC) and should be as fast as the native
// layers. They run on the calling goroutine.

// AffineRows sets dst = src·scale + shift per channel over rows of
// len(scale) values, clamped at 0 when relu is set. dst and src may be
// the same slice; shift must have len(scale) values.
func AffineRows(dst, src, scale, shift []float32, relu bool) {
	if len(scale) == 0 || len(shift) < len(scale) || len(dst) < len(src) {
		panic("nn: AffineRows needs len(shift) ≥ len(scale) > 0 and len(dst) ≥ len(src)")
	}
	affine(dst, src, len(scale), scale, shift, relu)
}

// MaxPool2x2Row computes one output row of a 2×2, stride-2 max pool over
// NHWC data: dst (ow·c values) gets the maximum of each 2×2 window of the
// input rows top and bot (2·ow·c values each).
func MaxPool2x2Row(dst, top, bot []float32, ow, c int) {
	if len(dst) < ow*c || len(top) < 2*ow*c || len(bot) < 2*ow*c {
		panic("nn: MaxPool2x2Row slices are shorter than ow and c need")
	}
	pool2x2Row(dst, nil, top, bot, ow, c, 0, 0)
}
