package kernels

// The transforms of F(4×4, 3×3) (the weights' G is winoG4):
//
//	Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1]
//	Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1]

// winoBT6 is Bᵀ·x through the factorisation the assembly uses.
func winoBT6(x *[6]float32) (r [6]float32) {
	a, b := x[4]-4*x[2], x[3]-4*x[1]
	r[1], r[2] = a+b, a-b
	c, e := x[4]-x[2], x[3]-x[1]
	r[3], r[4] = c+2*e, c-2*e
	r[0] = (x[4] - 5*x[2]) + 4*x[0]
	r[5] = (x[5] - 5*x[3]) + 4*x[1]
	return r
}

// winoAT6 is Aᵀ·x through the factorisation the assembly uses.
func winoAT6(x *[6]float32) (y [4]float32) {
	p, q := x[1]+x[2], x[1]-x[2]
	s, t := x[3]+x[4], x[3]-x[4]
	y[0] = x[0] + p + s
	y[1] = q + 2*t
	y[2] = p + 4*s
	y[3] = q + 8*t + x[5]
	return y
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
			r := winoBT6(&col)
			for i := range 6 {
				t[i][j] = r[i]
			}
		}
		for i := range 6 {
			r := winoBT6(&t[i])
			for kk := range 6 {
				out[(i*6+kk)*ds+k] = r[kk]
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
			r := winoAT6(&col)
			for i := range 4 {
				s[i][j] = r[i]
			}
		}
		for i := range 4 {
			r := winoAT6(&s[i])
			for kk := range 4 {
				y := r[kk] + bias[k]
				if relu {
					y = max(y, 0)
				}
				d[i*4+kk][k] = y
			}
		}
	}
}

// winoA6 is A·x (A = (Aᵀ)ᵀ, 6×4), the adjoint of winoAT6, through the
// factorisation the assembly uses.
func winoA6(x *[4]float32) (y [6]float32) {
	e, o := x[0]+x[2], x[1]+x[3]
	E, O := x[0]+4*x[2], x[1]+4*x[3]
	y[0], y[5] = x[0], x[3]
	y[1], y[2] = e+o, e-o
	y[3], y[4] = E+2*O, E-2*O
	return y
}

// wino4GradOutputGo computes dM = A·dY·Aᵀ, the adjoint of the output
// transform, for channels [0, m), where pixel (i, j) of the 4×4 output
// gradient block dY is d[4i+j], writing dM[ξ] at out[ξ·ds:].
func wino4GradOutputGo(d *[16][]float32, m int, out []float32, ds int) {
	for k := range m {
		var t [6][4]float32 // t = A·dY
		for j := range 4 {
			col := [4]float32{d[j][k], d[4+j][k], d[8+j][k], d[12+j][k]}
			r := winoA6(&col)
			for i := range 6 {
				t[i][j] = r[i]
			}
		}
		for i := range 6 {
			r := winoA6(&t[i])
			for kk := range 6 {
				out[(i*6+kk)*ds+k] = r[kk]
			}
		}
	}
}
