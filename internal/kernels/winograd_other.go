//go:build !amd64

package kernels

// winoAsm is false: this architecture has only the Go transforms.
const winoAsm = false

func winoInputAVX2(p *float32, rs, ps, c int, out *float32, ds int) {
	panic("kernels: no assembly Winograd transforms on this architecture")
}

func winoOutputAVX2(src *float32, ss, m int, bias *float32, relu bool, d0, d1, d2, d3 *float32) {
	panic("kernels: no assembly Winograd transforms on this architecture")
}

func wino4InputAVX2(p *float32, rs, ps int, out *float32, ds int, tmp *float32, chunks int) {
	panic("kernels: no assembly Winograd transforms on this architecture")
}

func wino4OutputAVX2(src *float32, ss int, bias *float32, relu bool, d *[16]*float32, off int, tmp *float32, chunks int) {
	panic("kernels: no assembly Winograd transforms on this architecture")
}

func wino4GradOutputAVX2(d *[16]*float32, off int, out *float32, ds int, tmp *float32, chunks int) {
	panic("kernels: no assembly Winograd transforms on this architecture")
}

func max4AVX2(dst, a, b, c, d *float32, n int) {
	panic("kernels: no assembly Winograd transforms on this architecture")
}

func conv3x3RowAVX2(in *float32, prs, c3 int, wt *float32, m int, bias *float32, relu bool, out *float32, w, c int) {
	panic("kernels: no assembly direct convolution on this architecture")
}

// direct16Asm: no AVX-512 kernel on this architecture.
const direct16Asm = false

func conv3x3Row16AVX512(in *float32, prs int, wt, bias, res *float32, flags int, out *float32, w int) {
	panic("kernels: no assembly direct convolution on this architecture")
}
