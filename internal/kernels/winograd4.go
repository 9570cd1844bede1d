package kernels

// winoBT is Bᵀ of F(4×4, 3×3) and winoAT its Aᵀ (the G of the weights is
// winoG4).
var (
	winoBT = [6][6]float32{
		{4, 0, -5, 0, 1, 0},
		{0, -4, -4, 1, 1, 0},
		{0, 4, -4, -1, 1, 0},
		{0, -2, -1, 2, 1, 0},
		{0, 2, -1, -2, 1, 0},
		{0, 4, 0, -5, 0, 1},
	}
	winoAT = [4][6]float32{
		{1, 1, 1, 1, 1, 0},
		{0, 1, -1, 2, -2, 0},
		{0, 1, 1, 4, 4, 0},
		{0, 1, -1, 8, -8, 1},
	}
)

// winoCombine is Σ coef[l]·x[l] summed as the assembly does: from the
// first +1 term, then the others in order.
func winoCombine(coef *[6]float32, x *[6]float32) float32 {
	first := 0
	for coef[first] != 1 {
		first++
	}
	acc := x[first]
	for l, v := range coef {
		switch {
		case l == first || v == 0:
		case v == 1:
			acc += x[l]
		case v == -1:
			acc -= x[l]
		default:
			acc += v * x[l]
		}
	}
	return acc
}

// wino4InputGo computes V = Bᵀ·d·B for c channels of the 6×6 tile whose
// pixel (i, j) starts at p[i·rs+j·ps], writing V[ξ] at out[ξ·ds:].
func wino4InputGo(p []float32, rs, ps, c int, out []float32, ds int) {
	for k := range c {
		var t [6][6]float32 // t[i][j] = (Bᵀ·d)[i][j]
		for j := range 6 {
			var col [6]float32
			for l := range 6 {
				col[l] = p[l*rs+j*ps+k]
			}
			for i := range 6 {
				t[i][j] = winoCombine(&winoBT[i], &col)
			}
		}
		for i := range 6 {
			for kk := range 6 {
				out[(i*6+kk)*ds+k] = winoCombine(&winoBT[kk], &t[i])
			}
		}
	}
}

// wino4OutputGo computes Y = Aᵀ·Mξ·A + bias (then ReLU when relu) for
// channels [m0, m1), where Mξ is at src[ξ·ss:], writing output pixel
// (i, j) of the 4×4 block to d[4i+j].
func wino4OutputGo(src []float32, ss int, bias []float32, m0, m1 int, relu bool, d *[16][]float32) {
	for k := m0; k < m1; k++ {
		var s [4][6]float32
		for j := range 6 {
			var col [6]float32
			for l := range 6 {
				col[l] = src[(l*6+j)*ss+k]
			}
			for i := range 4 {
				s[i][j] = winoCombine(&winoAT[i], &col)
			}
		}
		for i := range 4 {
			for kk := range 4 {
				y := winoCombine(&winoAT[kk], &s[i]) + bias[k]
				if relu {
					y = max(y, 0)
				}
				d[i*4+kk][k] = y
			}
		}
	}
}
