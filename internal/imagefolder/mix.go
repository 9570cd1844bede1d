package imagefolder

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/imageprep"
)

// MixConfig says how photos join Fashion-MNIST training images.
type MixConfig struct {
	// Ratio is the share of photo copies in the mixed set (0 ≤ Ratio < 1):
	// each trainable photo is repeated, each copy differently augmented,
	// until photos are Ratio of all images.
	Ratio float64
	// ConvertProb is the probability that a Fashion-MNIST image is changed
	// to look like what the conversion makes of a real photo (Convert).
	ConvertProb float64
	Seed        uint64
}

// Mix returns train followed by the photos of s that have targets, the
// labels in nn.CrossEntropy's encoding and the label sets they use.
func Mix(train idx.Set, s *Set, cfg MixConfig) (idx.Set, [][]int, error) {
	const side = imageprep.Side
	const px = side * side
	if train.Images.Rows != side || train.Images.Cols != side {
		return idx.Set{}, nil, fmt.Errorf("mix: training images are %d×%d, want %d×%d", train.Images.Rows, train.Images.Cols, side, side)
	}
	if !(cfg.Ratio >= 0 && cfg.Ratio < 1) {
		return idx.Set{}, nil, fmt.Errorf("mix: photo ratio %v must be in [0, 1)", cfg.Ratio)
	}
	labels, ok, sets := s.Labels()
	if len(s.Mapping.Classes)+len(sets) > 256 {
		return idx.Set{}, nil, fmt.Errorf("mix: %d classes and %d class sets do not fit byte labels", len(s.Mapping.Classes), len(sets))
	}
	var photos []int
	for i, o := range ok {
		if o {
			photos = append(photos, i)
		}
	}
	if len(photos) == 0 {
		return idx.Set{}, nil, errors.New("mix: no photo has a class (all folders are \"none\"?)")
	}
	nf := train.Images.N
	copies := int(math.Round(cfg.Ratio / (1 - cfg.Ratio) * float64(nf)))
	if cfg.Ratio > 0 {
		copies = max(copies, len(photos))
	}
	const maxMixed = 2_000_000
	if nf+copies > maxMixed {
		return idx.Set{}, nil, fmt.Errorf("mix: %d images is more than %d", nf+copies, maxMixed)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x1a6e))
	out := idx.Set{Images: idx.Images{N: nf + copies, Rows: side, Cols: side, Pix: make([]uint8, (nf+copies)*px)}, Labels: make([]uint8, nf+copies)}
	copy(out.Images.Pix, train.Images.Pix[:nf*px])
	copy(out.Labels, train.Labels[:nf])
	for i := range nf {
		if rng.Float64() < cfg.ConvertProb {
			img := out.Images.Image(i)
			Convert(rng, img, img)
		}
	}
	for c := range copies {
		j := photos[c%len(photos)]
		dst := out.Images.Image(nf + c)
		copy(dst, s.Image(j))
		if c >= len(photos) { // the first copy of each photo is unchanged
			rescale(dst, dst, 0.8+0.2*rng.Float64(), rng)
		}
		out.Labels[nf+c] = labels[j]
	}
	return out, sets, nil
}

// Convert writes into dst (which may be src) a copy of the 28×28 dataset
// image src changed the way real photos come out of the conversion: the
// object smaller and off-centre, lower contrast, a faint band of residual
// background along one edge, a slight blur; each change at random.
func Convert(rng *rand.Rand, dst, src []uint8) {
	const side = imageprep.Side
	tmp := make([]float64, side*side)
	for i, v := range src {
		tmp[i] = float64(v)
	}
	if rng.Float64() < 0.7 {
		var b [side * side]uint8
		for i, v := range tmp {
			b[i] = uint8(v)
		}
		rescale(b[:], b[:], 0.6+0.4*rng.Float64(), rng)
		for i, v := range b {
			tmp[i] = float64(v)
		}
	}
	if rng.Float64() < 0.5 { // low contrast
		c := 0.4 + 0.6*rng.Float64()
		for i := range tmp {
			tmp[i] *= c
		}
	}
	if rng.Float64() < 0.3 { // residual background along one edge
		amp := 10 + 40*rng.Float64()
		width := 2 + rng.IntN(6)
		edge := rng.IntN(4)
		for y := range side {
			for x := range side {
				d := [4]int{y, side - 1 - y, x, side - 1 - x}[edge]
				if d < width {
					tmp[y*side+x] = max(tmp[y*side+x], amp*(1-float64(d)/float64(width)))
				}
			}
		}
	}
	if rng.Float64() < 0.3 { // blur: 3×3 binomial
		blurred := make([]float64, len(tmp))
		k := [3]float64{0.25, 0.5, 0.25}
		for y := range side {
			for x := range side {
				var s float64
				for dy := -1; dy <= 1; dy++ {
					for dx := -1; dx <= 1; dx++ {
						yy, xx := min(max(y+dy, 0), side-1), min(max(x+dx, 0), side-1)
						s += k[dy+1] * k[dx+1] * tmp[yy*side+xx]
					}
				}
				blurred[y*side+x] = s
			}
		}
		tmp = blurred
	}
	for i, v := range tmp {
		dst[i] = uint8(math.Round(min(max(v, 0), 255)))
	}
}

// rescale shrinks the 28×28 image src by factor s (bilinear, on black)
// and places it at a random position that keeps it inside; s ≥ 1 copies.
func rescale(dst, src []uint8, s float64, rng *rand.Rand) {
	const side = imageprep.Side
	if s >= 1 {
		copy(dst, src)
		return
	}
	n := side * s
	ox := rng.Float64() * (side - n)
	oy := rng.Float64() * (side - n)
	in := make([]uint8, len(src))
	copy(in, src)
	at := func(x, y int) float64 {
		if x < 0 || y < 0 || x >= side || y >= side {
			return 0
		}
		return float64(in[y*side+x])
	}
	for y := range side {
		for x := range side {
			// Source position of the output pixel centre.
			u := (float64(x)+0.5-ox)/s - 0.5
			v := (float64(y)+0.5-oy)/s - 0.5
			if u < -1 || v < -1 || u > side || v > side {
				dst[y*side+x] = 0
				continue
			}
			x0, y0 := int(math.Floor(u)), int(math.Floor(v))
			fx, fy := u-float64(x0), v-float64(y0)
			val := (1-fx)*(1-fy)*at(x0, y0) + fx*(1-fy)*at(x0+1, y0) + (1-fx)*fy*at(x0, y0+1) + fx*fy*at(x0+1, y0+1)
			dst[y*side+x] = uint8(math.Round(val))
		}
	}
}
