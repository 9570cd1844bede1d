package kernels

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
			y := reluInput(s[i], scale[i], shift[i])
			if relu {
				y = max(y, 0)
			}
			d[i] = y
		}
	}
}

// addGo sets dst = a + b, clamped at 0 if relu.
func addGo(dst, a, b []float32, relu bool) {
	b, dst = b[:len(a)], dst[:len(a)]
	for i, v := range a {
		y := v + b[i]
		if relu {
			y = max(y, 0)
		}
		dst[i] = y
	}
}

// mulAddGo sets dst[i] += a[i]·b[i].
func mulAddGo(dst, a, b []float32) {
	b, dst = b[:len(a)], dst[:len(a)]
	for i, v := range a {
		dst[i] += v * b[i]
	}
}

// hardSwishGo sets dst[i] = x·min(max(x/6 + 1/2, 0), 1) for x = src[i].
func hardSwishGo(dst, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = v * max(0, min(1, v*(1.0/6)+0.5))
	}
}

// hardSwishGradGo sets dx = dy·hardswish'(x).
func hardSwishGradGo(dx, dy, x []float32) {
	dy, dx = dy[:len(x)], dx[:len(x)]
	for i, v := range x {
		switch {
		case v <= -3:
			dx[i] = 0
		case v >= 3:
			dx[i] = dy[i]
		default:
			dx[i] = dy[i] * (2*v + 3) / 6
		}
	}
}

// reluGradGo sets dx = dy where x > 0, else 0.
func reluGradGo(dx, dy, x []float32) {
	dy, dx = dy[:len(x)], dx[:len(x)]
	for i, v := range x {
		if v > 0 {
			dx[i] = dy[i]
		} else {
			dx[i] = 0
		}
	}
}

// reluInput is x·scale + shift, the value a fused ReLU clamps. affineGo
// and the gradient kernels share it so that the mask the backward pass
// recomputes is the one the forward pass applied, rounding included.
func reluInput(x, scale, shift float32) float32 { return x*scale + shift }

// gradSumsGo adds Σg and Σg·x over rows to sd and sdx, where g is dy, or,
// when scale is not nil, dy where x·scale + shift > 0 (a fused ReLU's mask,
// recomputed from the input: reading the stored output instead would add
// a pass over memory as large as x).
func gradSumsGo(dy, x []float32, c int, scale, shift []float32, sd, sdx []float32) {
	for off := 0; off+c <= len(dy); off += c {
		d, xr := dy[off:off+c], x[off:off+c]
		for i := range d {
			g := d[i]
			if scale != nil && !(reluInput(xr[i], scale[i], shift[i]) > 0) {
				g = 0
			}
			sd[i] += g
			sdx[i] += g * xr[i]
		}
	}
}

// gradApplyGo sets dx = ka·g + kb·x + kc per channel, g as in gradSumsGo.
func gradApplyGo(dx, dy, x []float32, c int, scale, shift []float32, ka, kb, kc []float32) {
	for off := 0; off+c <= len(dy); off += c {
		d, xr, o := dy[off:off+c], x[off:off+c], dx[off:off+c]
		for i := range d {
			g := d[i]
			if scale != nil && !(reluInput(xr[i], scale[i], shift[i]) > 0) {
				g = 0
			}
			o[i] = ka[i]*g + kb[i]*xr[i] + kc[i]
		}
	}
}

// pool2x2RowGo computes one output row of a 2×2, stride-2 max pool: for
// each of ow output pixels and c channels, the maximum of the 2×2 window
// whose top row starts at top and bottom row at bot. When arg is not nil
// it receives the winner's index into the input tensor, where top and bot
// start at indices topIdx and botIdx. Ties go to the earliest of (top
// left, top right, bottom left, bottom right).
func pool2x2RowGo(dst []float32, arg []int32, top, bot []float32, ow, c, topIdx, botIdx int) {
	for ox := range ow {
		o, l, r := ox*c, 2*ox*c, (2*ox+1)*c
		for j := range c {
			v, at := top[l+j], topIdx+l+j
			if top[r+j] > v {
				v, at = top[r+j], topIdx+r+j
			}
			if bot[l+j] > v {
				v, at = bot[l+j], botIdx+l+j
			}
			if bot[r+j] > v {
				v, at = bot[r+j], botIdx+r+j
			}
			dst[o+j] = v
			if arg != nil {
				arg[o+j] = int32(at)
			}
		}
	}
}

// maxU8Go sets dst[i] = max(dst[i], src[i]).
func maxU8Go(dst, src []uint8) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = max(dst[i], v)
	}
}
