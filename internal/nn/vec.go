package nn

// Per-channel kernels of batch norm over rows of c values (NHWC). Each has
// a pure-Go version here; on amd64 with AVX2+FMA, channel counts that are
// multiples of 8 go to the assembly in vec_amd64.s instead (vec_test.go
// compares the two). Go does not vectorise these loops, and they touch
// every activation of every layer twice per step.

// channelSumsGo adds Σx and Σx² over rows to s1 and s2.
func channelSumsGo(x []float32, c int, s1, s2 []float32) {
	for off := 0; off+c <= len(x); off += c {
		row := x[off : off+c]
		for i, v := range row {
			s1[i] += v
			s2[i] += v * v
		}
	}
}

// affineGo sets dst = src·scale + shift per channel, clamped at 0 if relu.
func affineGo(dst, src []float32, c int, scale, shift []float32, relu bool) {
	for off := 0; off+c <= len(src); off += c {
		s, d := src[off:off+c], dst[off:off+c]
		for i := range s {
			y := s[i]*scale[i] + shift[i]
			if relu {
				y = max(y, 0)
			}
			d[i] = y
		}
	}
}

// gradSumsGo adds Σg and Σg·x over rows to sd and sdx, where g is dy, or
// dy where y > 0 when y is not nil (a fused ReLU's mask).
func gradSumsGo(dy, y, x []float32, c int, sd, sdx []float32) {
	for off := 0; off+c <= len(dy); off += c {
		d, xr := dy[off:off+c], x[off:off+c]
		for i := range d {
			g := d[i]
			if y != nil && !(y[off+i] > 0) {
				g = 0
			}
			sd[i] += g
			sdx[i] += g * xr[i]
		}
	}
}

// gradApplyGo sets dx = ka·g + kb·x + kc per channel, g as in gradSumsGo.
func gradApplyGo(dx, dy, y, x []float32, c int, ka, kb, kc []float32) {
	for off := 0; off+c <= len(dy); off += c {
		d, xr, o := dy[off:off+c], x[off:off+c], dx[off:off+c]
		for i := range d {
			g := d[i]
			if y != nil && !(y[off+i] > 0) {
				g = 0
			}
			o[i] = ka[i]*g + kb[i]*xr[i] + kc[i]
		}
	}
}
