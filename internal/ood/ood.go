// Package ood scores how unlike a model's training data an input is, so a
// classifier can say "this is not one of my classes" (a digit, a cat)
// instead of naming a garment.
//
// The score combines two views that fail differently: the network's
// energy, −log Σ exp(logit) (Liu et al. 2020: low for inputs like the
// training data, high otherwise), and the Mahalanobis distance of the
// input itself, reduced to Side×Side, from the nearest class mean under
// the classes' shared covariance (Lee et al. 2018, here in input space).
// Each is standardised with its mean and spread on held-out
// in-distribution data (log distance for the latter) and the score is
// their average: higher means less like the training data. On the shipped
// Fashion-MNIST model the combination separates MNIST digits from
// Fashion-MNIST test images with AUROC ≈ 0.997, better than either view
// alone (≈ 0.97 each).
package ood

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Side is the side of the reduced input the distance is measured on.
const Side = 14

// dim is the length of a reduced input.
const dim = Side * Side

// Detector is a fitted out-of-distribution score with its threshold.
type Detector struct {
	Means     [][]float32 // per class, the mean reduced input
	Precision []float32   // dim×dim inverse of the shared covariance
	Norm      Norm

	// white is Uᵀ of the Cholesky factorisation Precision = U·Uᵀ stored
	// row-major as the upper triangle, and whiteMeans holds white·mean per
	// class: the squared distance (v−m)ᵀ·Precision·(v−m) is then
	// |white·v − whiteMeans[c]|², one triangular product per image instead
	// of a dim² quadratic form per class (≈18× less work for 10 classes,
	// which made the detector cost as much as the network at batch 256).
	white      []float64
	whiteMeans [][]float64
}

// whiten prepares white and whiteMeans from Precision and Means; Fit and
// FromTensors call it.
func (d *Detector) whiten() error {
	l := make([]float64, dim*dim) // lower Cholesky factor, row-major
	for i := range dim {
		for j := 0; j <= i; j++ {
			s := float64(d.Precision[i*dim+j])
			for k := range j {
				s -= l[i*dim+k] * l[j*dim+k]
			}
			if i == j {
				if !(s > 0) {
					return errors.New("ood: precision matrix is not positive definite")
				}
				l[i*dim+i] = math.Sqrt(s)
			} else {
				l[i*dim+j] = s / l[j*dim+j]
			}
		}
	}
	// white = Lᵀ (upper triangular): (Lᵀv)_i = Σ_{j≥i} L[j][i]·v_j.
	d.white = make([]float64, dim*dim)
	for i := range dim {
		for j := i; j < dim; j++ {
			d.white[i*dim+j] = l[j*dim+i]
		}
	}
	d.whiteMeans = make([][]float64, len(d.Means))
	for c, m := range d.Means {
		var mv [dim]float64
		for j, x := range m {
			mv[j] = float64(x)
		}
		d.whiteMeans[c] = make([]float64, dim)
		d.whiteProduct(d.whiteMeans[c], mv[:])
	}
	return nil
}

// whiteProduct sets dst = white·v.
func (d *Detector) whiteProduct(dst, v []float64) {
	for i := range dim {
		row := d.white[i*dim : (i+1)*dim]
		var s float64
		for j := i; j < dim; j++ {
			s += row[j] * v[j]
		}
		dst[i] = s
	}
}

// Norm holds the standardisation and the threshold, all fitted on held-out
// in-distribution data. It is stored as the model file's "ood" metadata.
type Norm struct {
	DistMean   float64 `json:"dist_mean"` // of log(1 + distance)
	DistStd    float64 `json:"dist_std"`
	EnergyMean float64 `json:"energy_mean"`
	EnergyStd  float64 `json:"energy_std"`
	// Threshold: a score above it is out of distribution.
	Threshold float64 `json:"threshold"`
	// TPR is the share of the held-out in-distribution images the
	// threshold keeps in distribution; Heldout says which images those were.
	TPR     float64 `json:"tpr"`
	Heldout string  `json:"heldout"`
}

// reduce averages the 28×28 pixels into Side×Side values in [0, 1].
func reduce(dst []float64, pix []uint8) {
	clear(dst)
	const f = 28 / Side
	for y := range 28 {
		for x := range 28 {
			dst[(y/f)*Side+x/f] += float64(pix[y*28+x]) / (255 * f * f)
		}
	}
}

// Fit estimates the class means and shared covariance from n training
// images (28×28, row-major in pix) with labels below k; images with
// labels ≥ k (set-valued or unlabelled) are skipped.
func Fit(pix []uint8, labels []uint8, k int) (*Detector, error) {
	n := len(labels)
	if len(pix) != n*784 {
		return nil, fmt.Errorf("ood: %d pixels for %d images", len(pix), n)
	}
	means := make([][]float64, k)
	counts := make([]int, k)
	for c := range means {
		means[c] = make([]float64, dim)
	}
	v := make([]float64, dim)
	for i, l := range labels {
		if int(l) >= k {
			continue
		}
		reduce(v, pix[i*784:(i+1)*784])
		counts[l]++
		for j := range v {
			means[l][j] += v[j]
		}
	}
	for c := range means {
		if counts[c] == 0 {
			return nil, fmt.Errorf("ood: no training image of class %d", c)
		}
		for j := range means[c] {
			means[c][j] /= float64(counts[c])
		}
	}
	cov := make([]float64, dim*dim)
	total := 0
	for i, l := range labels {
		if int(l) >= k {
			continue
		}
		total++
		reduce(v, pix[i*784:(i+1)*784])
		for a := range dim {
			v[a] -= means[l][a]
		}
		for a := range dim {
			if v[a] == 0 {
				continue
			}
			row := cov[a*dim : (a+1)*dim]
			for b := range dim {
				row[b] += v[a] * v[b]
			}
		}
	}
	for i := range cov {
		cov[i] /= float64(total)
	}
	for a := range dim {
		cov[a*dim+a] += 1e-3 // ridge: border cells of the reduced image hardly vary
	}
	prec, err := invert(cov, dim)
	if err != nil {
		return nil, err
	}
	d := &Detector{Precision: make([]float32, dim*dim), Means: make([][]float32, k)}
	for i, p := range prec {
		d.Precision[i] = float32(p)
	}
	for c := range means {
		d.Means[c] = make([]float32, dim)
		for j, m := range means[c] {
			d.Means[c][j] = float32(m)
		}
	}
	return d, d.whiten()
}

// parts returns the two raw views of one image: log(1 + distance to the
// nearest class mean) and the energy of its logits.
func (d *Detector) parts(pix []uint8, logits []float32) (dist, energy float64) {
	var v, w [dim]float64
	reduce(v[:], pix)
	d.whiteProduct(w[:], v[:])
	best := math.Inf(1)
	for _, m := range d.whiteMeans {
		var s float64
		for j, x := range m {
			s += (w[j] - x) * (w[j] - x)
		}
		best = min(best, s)
	}
	return math.Log1p(max(best, 0)), Energy(logits)
}

// Energy is −log Σ exp(logits), computed stably.
func Energy(logits []float32) float64 {
	m := float64(slices.Max(logits))
	var s float64
	for _, z := range logits {
		s += math.Exp(float64(z) - m)
	}
	return -(m + math.Log(s))
}

// Score returns the out-of-distribution score of a 28×28 model input
// (pix) given the model's raw logits for it: higher is less like the
// training data; above Norm.Threshold is out of distribution.
func (d *Detector) Score(pix []uint8, logits []float32) float64 {
	dist, e := d.parts(pix, logits)
	return d.Norm.combine(dist, e)
}

func (n Norm) combine(dist, energy float64) float64 {
	return 0.5*(dist-n.DistMean)/n.DistStd + 0.5*(energy-n.EnergyMean)/n.EnergyStd
}

// InDistribution reports whether score is at or below the threshold.
func (d *Detector) InDistribution(score float64) bool { return score <= d.Norm.Threshold }

// Calibrate fits the standardisation on held-out in-distribution images
// (pix, with the model's logits, k per image) and puts the threshold at
// the tpr quantile of their scores, so that share of them stays in
// distribution. heldout describes the images for the record.
func (d *Detector) Calibrate(pix []uint8, logits []float32, tpr float64, heldout string) error {
	n := len(pix) / 784
	if n < 100 || len(logits)%n != 0 {
		return fmt.Errorf("ood: calibrating on %d images with %d logits (want at least 100)", n, len(logits))
	}
	if !(tpr > 0.5 && tpr < 1) {
		return fmt.Errorf("ood: tpr %v not in (0.5, 1)", tpr)
	}
	k := len(logits) / n
	dists, energies := make([]float64, n), make([]float64, n)
	for i := range n {
		dists[i], energies[i] = d.parts(pix[i*784:(i+1)*784], logits[i*k:(i+1)*k])
	}
	d.Norm = Norm{TPR: tpr, Heldout: heldout}
	d.Norm.DistMean, d.Norm.DistStd = meanStd(dists)
	d.Norm.EnergyMean, d.Norm.EnergyStd = meanStd(energies)
	if d.Norm.DistStd == 0 || d.Norm.EnergyStd == 0 {
		return errors.New("ood: held-out images do not vary")
	}
	scores := make([]float64, n)
	for i := range scores {
		scores[i] = d.Norm.combine(dists[i], energies[i])
	}
	slices.Sort(scores)
	d.Norm.Threshold = scores[min(n-1, int(math.Ceil(tpr*float64(n)))-1)]
	return nil
}

func meanStd(v []float64) (float64, float64) {
	var s float64
	for _, x := range v {
		s += x
	}
	m := s / float64(len(v))
	var ss float64
	for _, x := range v {
		ss += (x - m) * (x - m)
	}
	return m, math.Sqrt(ss / float64(len(v)))
}

// MarshalNorm and UnmarshalNorm encode Norm as the model file's metadata.
func MarshalNorm(n Norm) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// UnmarshalNorm parses MarshalNorm's output.
func UnmarshalNorm(s string) (Norm, error) {
	var n Norm
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		return n, fmt.Errorf("ood metadata: %w", err)
	}
	if !(n.DistStd > 0 && n.EnergyStd > 0) || math.IsNaN(n.Threshold) || math.IsInf(n.Threshold, 0) {
		return n, fmt.Errorf("ood metadata: bad normalisation %+v", n)
	}
	return n, nil
}

// Tensors returns the detector's arrays under the names a model file
// stores them: "ood/means" (classes×dim) and "ood/precision" (dim×dim).
func (d *Detector) Tensors() map[string][]float32 {
	means := make([]float32, 0, len(d.Means)*dim)
	for _, m := range d.Means {
		means = append(means, m...)
	}
	return map[string][]float32{"ood/means": means, "ood/precision": d.Precision}
}

// FromTensors rebuilds a detector from Tensors' arrays and its Norm, for a
// model of k classes.
func FromTensors(t map[string][]float32, norm Norm, k int) (*Detector, error) {
	means, prec := t["ood/means"], t["ood/precision"]
	if len(means) != k*dim || len(prec) != dim*dim {
		return nil, fmt.Errorf("ood: tensors of %d and %d values, want %d and %d", len(means), len(prec), k*dim, dim*dim)
	}
	for _, v := range append(slices.Clone(means), prec...) {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, errors.New("ood: detector tensors hold non-finite values")
		}
	}
	d := &Detector{Precision: prec, Norm: norm}
	for c := range k {
		d.Means = append(d.Means, means[c*dim:(c+1)*dim])
	}
	return d, d.whiten()
}

// AUROC is the probability that a random out-of-distribution score is
// above a random in-distribution one (ties count half).
func AUROC(in, out []float64) float64 {
	s := slices.Clone(in)
	slices.Sort(s)
	var sum float64
	for _, o := range out {
		lo, _ := slices.BinarySearch(s, o)
		hi := lo
		for hi < len(s) && s[hi] == o {
			hi++
		}
		sum += (float64(lo) + 0.5*float64(hi-lo)) / float64(len(s))
	}
	return sum / float64(len(out))
}

// invert returns the inverse of the n×n matrix a by Gauss–Jordan
// elimination with partial pivoting.
func invert(a []float64, n int) ([]float64, error) {
	w := 2 * n
	m := make([]float64, n*w)
	for i := range n {
		copy(m[i*w:i*w+n], a[i*n:(i+1)*n])
		m[i*w+n+i] = 1
	}
	for c := range n {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(m[r*w+c]) > math.Abs(m[p*w+c]) {
				p = r
			}
		}
		if m[p*w+c] == 0 {
			return nil, errors.New("ood: covariance is singular")
		}
		if p != c {
			for j := range w {
				m[c*w+j], m[p*w+j] = m[p*w+j], m[c*w+j]
			}
		}
		piv := m[c*w+c]
		for j := range w {
			m[c*w+j] /= piv
		}
		for r := range n {
			if r == c || m[r*w+c] == 0 {
				continue
			}
			f := m[r*w+c]
			for j := range w {
				m[r*w+j] -= f * m[c*w+j]
			}
		}
	}
	out := make([]float64, n*n)
	for i := range n {
		copy(out[i*n:(i+1)*n], m[i*w+n:(i+1)*w])
	}
	return out, nil
}
