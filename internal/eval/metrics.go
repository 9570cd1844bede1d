// Package metrics computes classification quality figures — accuracy,
// per-class precision, recall and F1, and the confusion matrix — and the small
// numeric helpers (softmax, argmax, top-k) that turn model logits into
// predictions. The training loop, the eval command and the server all use it,
// so every number the product reports is computed one way.
package eval

import (
	"fmt"
	"math"
	"sort"
)

// Confusion is a confusion matrix over a fixed list of classes.
// Counts[t][p] is the number of samples whose true class is t and whose
// predicted class is p, so row sums are class supports and the diagonal holds
// the correct predictions.
type Confusion struct {
	Classes []string
	Counts  [][]int
}

// NewConfusion returns an empty confusion matrix for the given class names,
// in class-id order. The names are copied so later changes by the caller do
// not alter the matrix.
func NewConfusion(classes []string) *Confusion {
	c := &Confusion{
		Classes: append([]string(nil), classes...),
		Counts:  make([][]int, len(classes)),
	}
	for i := range c.Counts {
		c.Counts[i] = make([]int, len(classes))
	}
	return c
}

// Add records one sample with true class truth and predicted class pred.
// It panics if either id is outside [0, len(Classes)): an out-of-range class
// id is a programming error in the caller, not bad user input, and silently
// dropping it would make every reported figure wrong.
func (c *Confusion) Add(truth, pred int) {
	n := len(c.Classes)
	if truth < 0 || truth >= n || pred < 0 || pred >= n {
		panic(fmt.Sprintf("metrics: Confusion.Add(%d, %d) with %d classes", truth, pred, n))
	}
	c.Counts[truth][pred]++
}

// Total returns the number of samples recorded.
func (c *Confusion) Total() int {
	n := 0
	for _, row := range c.Counts {
		for _, v := range row {
			n += v
		}
	}
	return n
}

// ClassReport holds the quality figures of one class.
// Precision is the fraction of samples predicted as the class that truly
// belong to it, Recall the fraction of the class's samples predicted
// correctly, F1 their harmonic mean and Support the number of samples whose
// true class it is. A ratio whose denominator is zero is reported as 0, as
// scikit-learn does, so that the figures stay valid JSON and sort sensibly.
type ClassReport struct {
	Class     string  `json:"class"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	Support   int     `json:"support"`
}

// Report summarises a confusion matrix: overall accuracy, macro-averaged F1
// (the unweighted mean over classes, so rare classes count as much as common
// ones), per-class figures and a copy of the matrix itself.
type Report struct {
	Accuracy  float64       `json:"accuracy"`
	Correct   int           `json:"correct"`
	N         int           `json:"n"`
	MacroF1   float64       `json:"macro_f1"`
	PerClass  []ClassReport `json:"per_class"`
	Confusion [][]int       `json:"confusion"`
}

// Report computes accuracy and per-class precision, recall and F1 from the
// matrix. An empty matrix gives zero for every figure rather than NaN.
func (c *Confusion) Report() Report {
	k := len(c.Classes)
	r := Report{
		PerClass:  make([]ClassReport, k),
		Confusion: make([][]int, k),
	}
	predicted := make([]int, k) // column sums
	for t, row := range c.Counts {
		r.Confusion[t] = append([]int(nil), row...)
		for p, v := range row {
			predicted[p] += v
			r.N += v
			if p == t {
				r.Correct += v
			}
		}
	}
	r.Accuracy = ratio(r.Correct, r.N)
	var sumF1 float64
	for i, name := range c.Classes {
		tp := c.Counts[i][i]
		support := 0
		for _, v := range c.Counts[i] {
			support += v
		}
		cr := ClassReport{
			Class:     name,
			Precision: ratio(tp, predicted[i]),
			Recall:    ratio(tp, support),
			Support:   support,
		}
		if s := cr.Precision + cr.Recall; s > 0 {
			cr.F1 = 2 * cr.Precision * cr.Recall / s
		}
		sumF1 += cr.F1
		r.PerClass[i] = cr
	}
	if k > 0 {
		r.MacroF1 = sumF1 / float64(k)
	}
	return r
}

// ratio returns num/den, or 0 when den is 0.
func ratio(num, den int) float64 {
	if den == 0 {
		return 0
	}
	return float64(num) / float64(den)
}

// Argmax returns the index of the largest value in row, the first one on
// ties. NaN values are never chosen unless every value is NaN. It returns -1
// for an empty row.
func Argmax(row []float32) int {
	best := -1
	for i, v := range row {
		if v != v { // NaN
			continue
		}
		if best < 0 || v > row[best] {
			best = i
		}
	}
	if best < 0 && len(row) > 0 {
		return 0
	}
	return best
}

// TopK returns the ids of the k most probable classes, most probable first.
// Ties keep the lower class id first so the result is deterministic, and NaN
// values sort last. k larger than len(probs) is clamped; k ≤ 0 gives an empty
// slice.
func TopK(probs []float32, k int) []int {
	k = min(k, len(probs))
	if k <= 0 {
		return []int{}
	}
	ids := make([]int, len(probs))
	for i := range ids {
		ids[i] = i
	}
	sort.SliceStable(ids, func(a, b int) bool {
		pa, pb := probs[ids[a]], probs[ids[b]]
		if pb != pb { // NaN in b: anything real goes first
			return pa == pa
		}
		return pa > pb
	})
	return ids[:k:k]
}

// Softmax writes the softmax of logits into dst, which must have the same
// length (dst may alias logits). The maximum is subtracted before
// exponentiating so that large logits do not overflow to +Inf and give NaN.
// Entries equal to +Inf share the probability mass equally; a NaN logit
// makes the whole output NaN, since no distribution is meaningful then.
// It panics if the lengths differ, a programming error in the caller.
func Softmax(dst, logits []float32) {
	if len(dst) != len(logits) {
		panic(fmt.Sprintf("metrics: Softmax dst length %d != logits length %d", len(dst), len(logits)))
	}
	if len(logits) == 0 {
		return
	}
	maxv := float32(math.Inf(-1))
	for _, v := range logits {
		maxv = max(maxv, v)
	}
	if math.IsInf(float64(maxv), 0) {
		// All −Inf (no information) or some +Inf: fall back to a uniform
		// distribution over the maximal entries instead of producing NaN.
		n := 0
		for _, v := range logits {
			if v == maxv {
				n++
			}
		}
		for i, v := range logits {
			if v == maxv {
				dst[i] = 1 / float32(n)
			} else {
				dst[i] = 0
			}
		}
		return
	}
	var sum float64
	for i, v := range logits {
		e := math.Exp(float64(v - maxv))
		dst[i] = float32(e)
		sum += e
	}
	inv := float32(1 / sum)
	for i := range dst {
		dst[i] *= inv
	}
}
