//go:build !amd64

package kernels

// ChannelSums adds Σx and Σx² over rows of c values of x to s1 and s2 (c
// values each), the batch statistics of batch norm.
func ChannelSums(x []float32, c int, s1, s2 []float32) { channelSumsGo(x, c, s1, s2) }

// Affine sets dst = src·scale + shift per channel over rows of c values,
// clamped at 0 when relu is set: batch norm in inference, and a bias with
// or without ReLU when scale is all ones. dst and src may be the same.
func Affine(dst, src []float32, c int, scale, shift []float32, relu bool) {
	affineGo(dst, src, c, scale, shift, relu)
}

// Add sets dst = a + b element by element, clamped at 0 when relu is set:
// a residual connection's sum and the ReLU after it. dst may be a or b.
func Add(dst, a, b []float32, relu bool) { addGo(dst, a, b, relu) }

// GradSums adds Σg and Σg·x over rows of c values to sd and sdx, where g
// is dy, or, when scale is not nil, dy where x·scale + shift > 0 (the mask
// of a fused ReLU, recomputed from the input).
func GradSums(dy, x []float32, c int, scale, shift []float32, sd, sdx []float32) {
	gradSumsGo(dy, x, c, scale, shift, sd, sdx)
}

// GradApply sets dx = ka·g + kb·x + kc per channel, g as in GradSums: the
// input gradient of batch norm.
func GradApply(dx, dy, x []float32, c int, scale, shift []float32, ka, kb, kc []float32) {
	gradApplyGo(dx, dy, x, c, scale, shift, ka, kb, kc)
}

// MaxPool2x2Row computes one output row of a 2×2, stride-2 max pool over
// NHWC rows: for each of ow output pixels and c channels, the maximum of
// the window whose top row is in top and bottom row in bot (2·ow·c values
// each). When arg is not nil it receives each winner's index, top and bot
// starting at indices topIdx and botIdx; ties go to the earliest of (top
// left, top right, bottom left, bottom right).
func MaxPool2x2Row(dst []float32, arg []int32, top, bot []float32, ow, c, topIdx, botIdx int) {
	pool2x2RowGo(dst, arg, top, bot, ow, c, topIdx, botIdx)
}

func mulAdd(dst, a, b []float32)        { mulAddGo(dst, a, b) }
func hardSwish(dst, src []float32)      { hardSwishGo(dst, src) }
func hardSwishGrad(dx, dy, x []float32) { hardSwishGradGo(dx, dy, x) }
func reluGrad(dx, dy, x []float32)      { reluGradGo(dx, dy, x) }

// MaxU8 sets dst[i] = max(dst[i], src[i]) for the len(dst) codes of dst
// (src at least as long): a max pool over the uint8 codes of an int8
// network, one window position at a time.
func MaxU8(dst, src []uint8) { maxU8Go(dst, src) }

// copyRunsU8 is copyRunsGo.
func copyRunsU8(dst, src []uint8, n, step, kh, rowStep, run int) {
	copyRunsGo(dst, src, n, step, kh, rowStep, run)
}

// maxPool2x2U8Row is maxPool2x2Go.
func maxPool2x2U8Row(out, top, bottom []uint8, ow, c int) { maxPool2x2Go(out, top, bottom, ow, c) }
