package kernels

import (
	"sync"

	"github.com/fashion-classifier/fashion/internal/parallel"
)

// bnMinRows is the fewest rows of c channels worth a goroutine of their
// own: 64k values, so that a 7×7×128 layer (800k values per batch of 128)
// is split too, while a single image's rows are not.
func bnMinRows(c int) int { return max(1, (1<<16)/c) }

// AffineParallel is Affine split between workers by rows.
func AffineParallel(dst, src []float32, c int, scale, shift []float32, relu bool) {
	parallel.For(len(src)/c, bnMinRows(c), func(lo, hi int) {
		Affine(dst[lo*c:hi*c], src[lo*c:hi*c], c, scale, shift, relu)
	})
}

// GradApplyParallel is GradApply split between workers by rows.
func GradApplyParallel(dx, dy, x []float32, c int, scale, shift []float32, ka, kb, kc []float32) {
	parallel.For(len(dy)/c, bnMinRows(c), func(lo, hi int) {
		GradApply(dx[lo*c:hi*c], dy[lo*c:hi*c], x[lo*c:hi*c], c, scale, shift, ka, kb, kc)
	})
}

// ChannelMoments sets s1 and s2 (c values each) to Σx and Σx² per channel
// over the rows of x: the batch statistics of batch norm, in one pass.
func ChannelMoments(s1, s2 []float64, x []float32, c int) {
	sumBlocks(s1, s2, c, len(x)/c, func(lo, hi int, p1, p2 []float32) {
		ChannelSums(x[lo*c:hi*c], c, p1, p2)
	})
}

// GradMoments sets sd and sdx to Σg and Σg·x per channel, g as in
// GradSums: the sums batch norm's input gradient needs.
func GradMoments(sd, sdx []float64, dy, x []float32, c int, scale, shift []float32) {
	sumBlocks(sd, sdx, c, len(dy)/c, func(lo, hi int, p1, p2 []float32) {
		GradSums(dy[lo*c:hi*c], x[lo*c:hi*c], c, scale, shift, p1, p2)
	})
}

// sumBlocks computes two per-channel sums over rows in parallel: sum
// fills float32 partial sums for rows [lo, hi), which are added into the
// float64 totals s1 and s2 (overwritten) every sumBlock rows, so rounding
// error does not grow with the batch.
func sumBlocks(s1, s2 []float64, c, rows int, sum func(lo, hi int, p1, p2 []float32)) {
	const sumBlock = 256
	clear(s1)
	clear(s2)
	var mu sync.Mutex
	parallel.For(rows, bnMinRows(c), func(lo, hi int) {
		p1, p2 := make([]float32, c), make([]float32, c)
		t1, t2 := make([]float64, c), make([]float64, c)
		for r := lo; r < hi; r += sumBlock {
			clear(p1)
			clear(p2)
			sum(r, min(r+sumBlock, hi), p1, p2)
			for i := range p1 {
				t1[i] += float64(p1[i])
				t2[i] += float64(p2[i])
			}
		}
		mu.Lock()
		for i := range t1 {
			s1[i] += t1[i]
			s2[i] += t2[i]
		}
		mu.Unlock()
	})
}
