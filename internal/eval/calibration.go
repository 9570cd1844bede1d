package eval

import (
	"fmt"
	"math"
)

// Calibration of confidences: temperature scaling (Guo et al. 2017) and the
// expected calibration error with its reliability diagram.

// Bin is one confidence bin of a reliability diagram.
type Bin struct {
	Lo, Hi     float64 // confidence range [Lo, Hi)
	N          int     // predictions whose confidence falls in it
	Confidence float64 // their mean confidence
	Accuracy   float64 // the share of them that are right
}

// Reliability bins n predictions (top-class confidence and whether it was
// right) into bins equal-width bins and returns them with the expected
// calibration error, Σ (N_b/n)·|accuracy_b − confidence_b|.
func Reliability(conf []float64, right []bool, bins int) ([]Bin, float64) {
	out := make([]Bin, bins)
	for i := range out {
		out[i].Lo, out[i].Hi = float64(i)/float64(bins), float64(i+1)/float64(bins)
	}
	for i, c := range conf {
		b := min(int(c*float64(bins)), bins-1)
		b = max(b, 0)
		out[b].N++
		out[b].Confidence += c
		if right[i] {
			out[b].Accuracy++
		}
	}
	var ece float64
	for i := range out {
		if out[i].N == 0 {
			continue
		}
		out[i].Confidence /= float64(out[i].N)
		out[i].Accuracy /= float64(out[i].N)
		ece += float64(out[i].N) / float64(len(conf)) * math.Abs(out[i].Accuracy-out[i].Confidence)
	}
	return out, ece
}

// Scored are n predictions as raw logits (k per row) with, for each row,
// the set of right classes (one class for ordinary labels).
type Scored struct {
	Logits []float32
	K      int
	Right  [][]int
}

// Confidences returns each row's top-class probability at temperature t
// and whether the top class is right.
func (s Scored) Confidences(t float64) ([]float64, []bool) {
	n := len(s.Right)
	conf, right := make([]float64, n), make([]bool, n)
	p := make([]float64, s.K)
	for r := range n {
		softmaxT(p, s.Logits[r*s.K:(r+1)*s.K], t)
		best := 0
		for i := range p {
			if p[i] > p[best] {
				best = i
			}
		}
		conf[r] = p[best]
		for _, c := range s.Right[r] {
			right[r] = right[r] || c == best
		}
	}
	return conf, right
}

// NLL is the mean negative log-likelihood of the right sets at temperature t.
func (s Scored) NLL(t float64) float64 {
	p := make([]float64, s.K)
	var total float64
	for r, set := range s.Right {
		softmaxT(p, s.Logits[r*s.K:(r+1)*s.K], t)
		var ps float64
		for _, c := range set {
			ps += p[c]
		}
		total -= math.Log(max(ps, 1e-300))
	}
	return total / float64(len(s.Right))
}

// FitTemperature returns the temperature in [0.05, 20] that minimises the
// NLL of s (a golden-section search on log t; the NLL is unimodal in t).
func FitTemperature(s Scored) (float64, error) {
	if len(s.Right) == 0 || len(s.Logits) != len(s.Right)*s.K {
		return 0, fmt.Errorf("eval: %d logits for %d rows of %d classes", len(s.Logits), len(s.Right), s.K)
	}
	lo, hi := math.Log(0.05), math.Log(20)
	g := (math.Sqrt(5) - 1) / 2
	a, b := hi-g*(hi-lo), lo+g*(hi-lo)
	fa, fb := s.NLL(math.Exp(a)), s.NLL(math.Exp(b))
	for range 60 {
		if fa < fb {
			hi, b, fb = b, a, fa
			a = hi - g*(hi-lo)
			fa = s.NLL(math.Exp(a))
		} else {
			lo, a, fa = a, b, fb
			b = lo + g*(hi-lo)
			fb = s.NLL(math.Exp(b))
		}
	}
	return math.Exp((lo + hi) / 2), nil
}

// softmaxT writes softmax(z/t) into p.
func softmaxT(p []float64, z []float32, t float64) {
	m := math.Inf(-1)
	for _, v := range z {
		m = max(m, float64(v)/t)
	}
	var s float64
	for i, v := range z {
		p[i] = math.Exp(float64(v)/t - m)
		s += p[i]
	}
	for i := range p {
		p[i] /= s
	}
}
