//go:build !amd64

package nn

func channelSums(x []float32, c int, s1, s2 []float32) { channelSumsGo(x, c, s1, s2) }

func affine(dst, src []float32, c int, scale, shift []float32, relu bool) {
	affineGo(dst, src, c, scale, shift, relu)
}

func gradSums(dy, x []float32, c int, scale, shift []float32, sd, sdx []float32) {
	gradSumsGo(dy, x, c, scale, shift, sd, sdx)
}

func gradApply(dx, dy, x []float32, c int, scale, shift []float32, ka, kb, kc []float32) {
	gradApplyGo(dx, dy, x, c, scale, shift, ka, kb, kc)
}

func pool2x2Row(dst []float32, arg []int32, top, bot []float32, ow, c, topIdx, botIdx int) {
	pool2x2RowGo(dst, arg, top, bot, ow, c, topIdx, botIdx)
}
