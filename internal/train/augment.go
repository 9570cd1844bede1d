package train

import (
	"math"
	"math/rand/v2"
)

// Augment describes the random changes made to each training image, the
// usual recipe for Fashion-MNIST: small shifts, mirror images and (when
// EraseProb > 0) random erasing (Zhong et al. 2017).
type Augment struct {
	Pad       int     // shift by up to ±Pad pixels (random crop of the zero-padded image)
	Flip      bool    // mirror left-right with probability ½
	EraseProb float64 // probability of blanking a random rectangle
}

// apply writes an augmented copy of the side×side image src into dst and
// says whether it is mirrored.
func (a Augment) apply(rng *rand.Rand, dst, src []uint8, side int) (flipped bool) {
	dx, dy := 0, 0
	if a.Pad > 0 {
		dx, dy = rng.IntN(2*a.Pad+1)-a.Pad, rng.IntN(2*a.Pad+1)-a.Pad
	}
	flip := a.Flip && rng.IntN(2) == 1
	for y := range side {
		sy := y + dy
		row := dst[y*side : (y+1)*side]
		if sy < 0 || sy >= side {
			clear(row)
			continue
		}
		for x := range side {
			sx := x + dx
			if flip {
				sx = side - 1 - x + dx
			}
			if sx < 0 || sx >= side {
				row[x] = 0
			} else {
				row[x] = src[sy*side+sx]
			}
		}
	}
	if a.EraseProb > 0 && rng.Float64() < a.EraseProb {
		// Area 2–33% of the image, aspect ratio 0.3–3.3, as in the paper.
		for range 10 {
			area := float64(side*side) * (0.02 + rng.Float64()*0.31)
			ratio := 0.3 + rng.Float64()*3
			h := int(math.Sqrt(area * ratio))
			w := int(math.Sqrt(area / ratio))
			if h < 1 || w < 1 || h >= side || w >= side {
				continue
			}
			y0, x0 := rng.IntN(side-h), rng.IntN(side-w)
			for y := y0; y < y0+h; y++ {
				for x := x0; x < x0+w; x++ {
					dst[y*side+x] = uint8(rng.IntN(256))
				}
			}
			break
		}
	}
	return flip
}
