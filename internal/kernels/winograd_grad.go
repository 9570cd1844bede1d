package kernels

import (
	"fmt"

	"github.com/fashion-classifier/fashion/internal/blas"
	"github.com/fashion-classifier/fashion/internal/parallel"
)

// Winograd3x3WeightGrad sets dw ([3·3·c, m], the layout of
// NewWinograd3x3's weights) to the weight gradient of the 3×3, stride-1,
// padding-1 convolution of x (n×h×wd×c, NHWC) given its output gradient dy
// (n×h×wd×m), computed through Winograd's algorithm: the convolution is
// Y = Aᵀ·[Σ_c (G·g·Gᵀ) ⊙ (Bᵀ·d·B)]·A per tile, so its weight gradient is
// dg = Gᵀ·dU·G with dU[ξ] = Σ_tiles V[ξ]ᵀ·dM[ξ], where V are the input
// tiles transformed as in Forward and dM = A·dY·Aᵀ the output-gradient
// tiles (zero beyond the image). The a² products of C×tiles by tiles×M do
// 4 (F(4×4)) or 2.25 (F(2×2)) times fewer multiply-adds than the direct
// weight gradient; the algorithm is the one Forward picks for the shape.
// Tiles are shared between parallel.Workers() goroutines, each summing
// into its own dU; s provides the temporary memory (nil allocates).
func Winograd3x3WeightGrad(dw, x, dy []float32, n, h, wd, c, m int, s *Scratch) {
	winoWeightGrad(winoR(n, h, wd), dw, x, dy, n, h, wd, c, m, s, parallel.Workers(), winoAsm)
}

// winoWeightGrad is Winograd3x3WeightGrad with the tile size r (2 or 4),
// the number of workers and the choice of assembly transforms given, for
// tests.
func winoWeightGrad(r int, dw, x, dy []float32, n, h, wd, c, m int, s *Scratch, workers int, asm bool) {
	if n < 0 || h < 1 || wd < 1 || c < 1 || m < 1 || len(dw) < 9*c*m || len(x) < n*h*wd*c || len(dy) < n*h*wd*m {
		panic(fmt.Sprintf("kernels.Winograd3x3WeightGrad: %d weights, %d inputs, %d gradients for %d images of %d×%d×%d→%d", len(dw), len(x), len(dy), n, h, wd, c, m))
	}
	g := winoG4
	if r == 2 {
		g = winoG2
	}
	f := winoForm{r: r, a: r + 2}
	a2 := f.a * f.a
	if n == 0 {
		clear(dw[:9*c*m])
		return
	}
	if s == nil {
		s = new(Scratch)
	}
	th, tw := (h+r-1)/r, (wd+r-1)/r
	tiles := n * th * tw
	// Tiles per task: the task's V and dM (a²·nt·(c+m) floats) within
	// 512 KiB, the products' inner dimension, but at least 4 tasks per
	// worker for balance.
	nt := max(16, (1<<17)/(a2*(c+m)))
	nt = max(1, min(nt, (tiles+4*workers-1)/(4*workers)))
	tasks := (tiles + nt - 1) / nt
	s.Reserve(workers)
	ran := make([]bool, workers)
	asmIn, asmOut := asm && c%8 == 0, asm && m%8 == 0 && r == 4
	task := func(wk, t int) {
		t0 := t * nt
		cnt := min(nt, tiles-t0)
		v := s.Floats(wk, slotA, a2*nt*c+a2*c+36*8)
		patch, tmp := v[a2*nt*c:a2*nt*c+a2*c], v[a2*nt*c+a2*c:]
		v = v[:a2*cnt*c]
		dm := s.Floats(wk, slotB, a2*nt*m+m)
		zero := dm[a2*nt*m:]
		clear(zero)
		dm = dm[:a2*cnt*m]
		acc := s.Floats(wk, slotD, a2*c*m)
		if !ran[wk] {
			clear(acc)
			ran[wk] = true
		}
		inputTiles(&f, c, v, patch, tmp, x, t0, cnt, th, tw, h, wd, asmIn)
		gradTiles(&f, m, dm, zero, tmp, dy, t0, cnt, th, tw, h, wd, asmOut)
		for xi := range a2 {
			blas.GemmSerial(true, false, c, m, cnt, 1, v[xi*cnt*c:], c, dm[xi*cnt*m:], m, 1, acc[xi*c*m:], m)
		}
	}
	if workers <= 1 || tasks == 1 {
		for t := range tasks {
			task(0, t)
		}
	} else {
		parallel.Run(workers, tasks, task)
	}
	// Sum the workers' dU into the first one's, then dg = Gᵀ·dU·G.
	var du []float32
	for wk, r := range ran {
		if !r {
			continue
		}
		part := s.Floats(wk, slotD, a2*c*m)
		if du == nil {
			du = part
		} else {
			blas.Axpy(1, part, du)
		}
	}
	parallel.For(c, max(1, 4096/m), func(lo, hi int) {
		for ci := lo; ci < hi; ci++ {
			untransformChannel(dw, g, du, ci, c, m)
		}
	})
}

// untransformChannel sets the weight gradient dg = Gᵀ·dU·G (the adjoint
// of transformChannel's U = G·g·Gᵀ) of the pairs of input channel ci, in
// float64, from the a² matrices dU[ξ] (c×m) in du.
func untransformChannel(dw []float32, g [][3]float64, du []float32, ci, c, m int) {
	a := len(g)
	var t [6][3]float64 // dU·G (a ≤ 6)
	for mo := range m {
		for i := range a {
			for kx := range 3 {
				var v float64
				for j := range a {
					v += float64(du[((i*a+j)*c+ci)*m+mo]) * g[j][kx]
				}
				t[i][kx] = v
			}
		}
		for ky := range 3 {
			for kx := range 3 {
				var v float64
				for i := range a {
					v += g[i][ky] * t[i][kx]
				}
				dw[((ky*3+kx)*c+ci)*m+mo] = float32(v)
			}
		}
	}
}

// gradTiles writes the transformed output-gradient tiles dM = A·dY·Aᵀ of
// tiles t0 … t0+nt−1 of dy (m channels) into dm: the a² matrices dM[ξ] of
// nt×m, ξ-major. Pixels of a block beyond the image read zero (m zeros);
// tmp is the assembly's temporary (24×8 floats).
func gradTiles(f *winoForm, m int, dm, zero, tmp, dy []float32, t0, nt, th, tw, h, wd int, asm bool) {
	r := f.r
	ds := nt * m
	var d [16][]float32
	var dp [16]*float32
	for i := range nt {
		t := t0 + i
		img, rem := t/(th*tw), t%(th*tw)
		y0, x0 := r*(rem/tw), r*(rem%tw)
		for k := range r * r {
			y, x := y0+k/r, x0+k%r
			if y < h && x < wd {
				d[k] = dy[((img*h+y)*wd+x)*m : ((img*h+y)*wd+x+1)*m]
			} else {
				d[k] = zero[:m]
			}
			dp[k] = &d[k][0]
		}
		out := dm[i*m:]
		_ = out[(f.a*f.a-1)*ds+m-1]
		switch {
		case asm:
			wino4GradOutputAVX2(&dp, 0, &out[0], ds, &tmp[0], m/8)
		case r == 4:
			wino4GradOutputGo(&d, m, out, ds)
		default:
			winoGradOutputGo((*[4][]float32)(d[:4]), m, out, ds)
		}
	}
}

// winoGradOutputGo computes dM = A·dY·Aᵀ for F(2×2) (A = (Aᵀ)ᵀ with
// Aᵀ = [1 1 1 0; 0 1 −1 −1]) for m channels, where pixel (i, j) of the
// 2×2 block dY is d[2i+j], writing dM[ξ] at out[ξ·ds:].
func winoGradOutputGo(d *[4][]float32, m int, out []float32, ds int) {
	a := func(x0, x1 float32) [4]float32 { return [4]float32{x0, x0 + x1, x0 - x1, -x1} }
	for k := range m {
		c0, c1 := a(d[0][k], d[2][k]), a(d[1][k], d[3][k]) // columns of A·dY
		for i := range 4 {
			row := a(c0[i], c1[i])
			for kk := range 4 {
				out[(i*4+kk)*ds+k] = row[kk]
			}
		}
	}
}
