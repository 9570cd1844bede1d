package kernels

import "golang.org/x/sys/cpu"

var vecAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func channelSumsAVX2(x *float32, rows, c int, s1, s2 *float32)

//go:noescape
func affineAVX2(dst, src *float32, rows, c int, scale, shift *float32, relu bool)

//go:noescape
func addAVX2(dst, a, b *float32, n int, relu bool)

//go:noescape
func gradSumsAVX2(dy, x *float32, rows, c int, scale, shift, sd, sdx *float32)

//go:noescape
func gradApplyAVX2(dx, dy, x *float32, rows, c int, scale, shift, ka, kb, kc *float32)

//go:noescape
func mulAddAVX2(dst, a, b *float32, n int)

//go:noescape
func hardSwishAVX2(dst, src *float32, n int)

//go:noescape
func hardSwishGradAVX2(dx, dy, x *float32, n int)

//go:noescape
func reluGradAVX2(dx, dy, x *float32, n int)

// The wrappers check lengths (the assembly cannot), pick the assembly when
// it applies and fall back to Go otherwise.

// ChannelSums adds Σx and Σx² over rows of c values of x to s1 and s2 (c
// values each), the batch statistics of batch norm.
func ChannelSums(x []float32, c int, s1, s2 []float32) {
	rows := len(x) / c
	if !vecAVX2 || c%8 != 0 || rows == 0 {
		channelSumsGo(x, c, s1, s2)
		return
	}
	_, _ = s1[c-1], s2[c-1]
	channelSumsAVX2(&x[0], rows, c, &s1[0], &s2[0])
}

// Affine sets dst = src·scale + shift per channel over rows of c values,
// clamped at 0 when relu is set: batch norm in inference, and a bias with
// or without ReLU when scale is all ones. dst and src may be the same.
func Affine(dst, src []float32, c int, scale, shift []float32, relu bool) {
	rows := len(src) / c
	if !vecAVX2 || c%8 != 0 || rows == 0 {
		affineGo(dst, src, c, scale, shift, relu)
		return
	}
	_, _, _ = dst[rows*c-1], scale[c-1], shift[c-1]
	affineAVX2(&dst[0], &src[0], rows, c, &scale[0], &shift[0], relu)
}

// Add sets dst = a + b element by element, clamped at 0 when relu is set:
// a residual connection's sum and the ReLU after it. dst may be a or b.
func Add(dst, a, b []float32, relu bool) {
	n := len(a) &^ 7
	if !vecAVX2 || n == 0 {
		addGo(dst, a, b, relu)
		return
	}
	_, _ = dst[len(a)-1], b[len(a)-1]
	addAVX2(&dst[0], &a[0], &b[0], n, relu)
	addGo(dst[n:], a[n:], b[n:], relu)
}

// GradSums adds Σg and Σg·x over rows of c values to sd and sdx, where g
// is dy, or, when scale is not nil, dy where x·scale + shift > 0 (the mask
// of a fused ReLU, recomputed from the input).
func GradSums(dy, x []float32, c int, scale, shift []float32, sd, sdx []float32) {
	rows := len(dy) / c
	if !vecAVX2 || c%8 != 0 || rows == 0 {
		gradSumsGo(dy, x, c, scale, shift, sd, sdx)
		return
	}
	_, _, _ = x[rows*c-1], sd[c-1], sdx[c-1]
	sc, sh := maskPtrs(scale, shift, c)
	gradSumsAVX2(&dy[0], &x[0], rows, c, sc, sh, &sd[0], &sdx[0])
}

// GradApply sets dx = ka·g + kb·x + kc per channel, g as in GradSums: the
// input gradient of batch norm.
func GradApply(dx, dy, x []float32, c int, scale, shift []float32, ka, kb, kc []float32) {
	rows := len(dy) / c
	if !vecAVX2 || c%8 != 0 || rows == 0 {
		gradApplyGo(dx, dy, x, c, scale, shift, ka, kb, kc)
		return
	}
	_, _, _, _, _ = dx[rows*c-1], x[rows*c-1], ka[c-1], kb[c-1], kc[c-1]
	sc, sh := maskPtrs(scale, shift, c)
	gradApplyAVX2(&dx[0], &dy[0], &x[0], rows, c, sc, sh, &ka[0], &kb[0], &kc[0])
}

// maskPtrs returns nils for no mask (scale nil), else the checked starts
// of scale and shift.
func maskPtrs(scale, shift []float32, c int) (*float32, *float32) {
	if scale == nil {
		return nil, nil
	}
	_, _ = scale[c-1], shift[c-1]
	return &scale[0], &shift[0]
}

//go:noescape
func pool2x2RowAVX2(dst *float32, arg *int32, top, bot *float32, ow, c, topIdx, botIdx int)

// MaxPool2x2Row computes one output row of a 2×2, stride-2 max pool over
// NHWC rows: for each of ow output pixels and c channels, the maximum of
// the window whose top row is in top and bottom row in bot (2·ow·c values
// each). When arg is not nil it receives each winner's index, top and bot
// starting at indices topIdx and botIdx; ties go to the earliest of (top
// left, top right, bottom left, bottom right).
func MaxPool2x2Row(dst []float32, arg []int32, top, bot []float32, ow, c, topIdx, botIdx int) {
	if !vecAVX2 || c%8 != 0 || ow == 0 {
		pool2x2RowGo(dst, arg, top, bot, ow, c, topIdx, botIdx)
		return
	}
	_, _, _ = dst[ow*c-1], top[2*ow*c-1], bot[2*ow*c-1]
	var argp *int32
	if arg != nil {
		_ = arg[ow*c-1]
		argp = &arg[0]
	}
	pool2x2RowAVX2(&dst[0], argp, &top[0], &bot[0], ow, c, topIdx, botIdx)
}

// mulAdd sets dst[i] += a[i]·b[i]: the inner loop of the depthwise
// convolution and its gradients, over one pixel's channels.
func mulAdd(dst, a, b []float32) {
	n := len(a) &^ 7
	if !vecAVX2 || n == 0 {
		mulAddGo(dst, a, b)
		return
	}
	_, _ = dst[len(a)-1], b[len(a)-1]
	mulAddAVX2(&dst[0], &a[0], &b[0], n)
	mulAddGo(dst[n:], a[n:], b[n:])
}

// hardSwish sets dst = hardswish(src), the same roundings as Act.Eval.
func hardSwish(dst, src []float32) {
	n := len(src) &^ 7
	if !vecAVX2 || n == 0 {
		hardSwishGo(dst, src)
		return
	}
	_ = dst[len(src)-1]
	hardSwishAVX2(&dst[0], &src[0], n)
	hardSwishGo(dst[n:], src[n:])
}

// hardSwishGrad sets dx = dy·hardswish'(x), the same roundings as
// hardSwishGradGo.
func hardSwishGrad(dx, dy, x []float32) {
	n := len(x) &^ 7
	if !vecAVX2 || n == 0 {
		hardSwishGradGo(dx, dy, x)
		return
	}
	_, _ = dx[len(x)-1], dy[len(x)-1]
	hardSwishGradAVX2(&dx[0], &dy[0], &x[0], n)
	hardSwishGradGo(dx[n:], dy[n:], x[n:])
}

// reluGrad sets dx = dy where x > 0, else 0: the ReLU's backward pass.
func reluGrad(dx, dy, x []float32) {
	n := len(x) &^ 7
	if !vecAVX2 || n == 0 {
		reluGradGo(dx, dy, x)
		return
	}
	_, _ = dx[len(x)-1], dy[len(x)-1]
	reluGradAVX2(&dx[0], &dy[0], &x[0], n)
	reluGradGo(dx[n:], dy[n:], x[n:])
}

//go:noescape
func maxU8AVX2(dst, src *uint8, n int)

// MaxU8 sets dst[i] = max(dst[i], src[i]) for the len(dst) codes of dst
// (src at least as long): a max pool over the uint8 codes of an int8
// network, one window position at a time.
func MaxU8(dst, src []uint8) {
	n := len(dst)
	_ = src[:n]
	head := 0
	if vecAVX2 {
		if head = n &^ 31; head > 0 {
			maxU8AVX2(&dst[0], &src[0], head)
		}
	}
	maxU8Go(dst[head:], src[head:n])
}

//go:noescape
func copyRunsAVX2(dst, src *uint8, n, step, kh, rowStep, run int)

// copyRunsU8 is copyRunsGo, in AVX2 when run is a multiple of 16 (one
// call for a row of pixels instead of a memmove per kernel row: the
// calls were a fifth of the int8 VGG-w32's time on the AVX-512 Xeon).
func copyRunsU8(dst, src []uint8, n, step, kh, rowStep, run int) {
	if !vecAVX2 || run%16 != 0 || n < 1 || kh < 1 {
		copyRunsGo(dst, src, n, step, kh, rowStep, run)
		return
	}
	_ = dst[n*kh*run-1]
	_ = src[(n-1)*step+(kh-1)*rowStep+run-1]
	copyRunsAVX2(&dst[0], &src[0], n, step, kh, rowStep, run)
}

//go:noescape
func maxPool2x2U8AVX2(out, top, bottom *uint8, ow, c int)

// maxPool2x2U8Row is maxPool2x2Go, in AVX2 when c is a multiple of 32
// (a call per output row instead of four per pixel: the int8 VGG-w32's
// max pools were a tenth of its time on the AVX-512 Xeon).
func maxPool2x2U8Row(out, top, bottom []uint8, ow, c int) {
	if !vecAVX2 || c%32 != 0 || ow < 1 {
		maxPool2x2Go(out, top, bottom, ow, c)
		return
	}
	_, _, _ = out[ow*c-1], top[2*ow*c-1], bottom[2*ow*c-1]
	maxPool2x2U8AVX2(&out[0], &top[0], &bottom[0], ow, c)
}
