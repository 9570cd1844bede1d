package nn

import (
	"fmt"
	"math"
)

// CrossEntropy is softmax cross-entropy with label smoothing: the target
// puts 1−Smoothing on the true class and spreads Smoothing evenly over all
// classes (Szegedy et al. 2016), which discourages over-confident logits.
type CrossEntropy struct {
	Smoothing float32
	grad      *Tensor
}

// Loss returns the mean loss over the batch, the gradient with respect to
// the logits (owned by c, overwritten on the next call) and how many rows'
// largest logit is the label.
func (c *CrossEntropy) Loss(logits *Tensor, labels []uint8) (float64, *Tensor, int) {
	n, k := logits.N, logits.H*logits.W*logits.C
	if len(labels) != n {
		panic(fmt.Sprintf("nn: %d labels for %d rows of logits", len(labels), n))
	}
	g := reuse(&c.grad, n, 1, 1, k)
	off := c.Smoothing / float32(k)
	on := 1 - c.Smoothing + off
	var total float64
	correct := 0
	for r := range n {
		z := logits.Data[r*k : (r+1)*k]
		p := g.Data[r*k : (r+1)*k]
		best := 0
		for i, v := range z {
			if v > z[best] {
				best = i
			}
		}
		if best == int(labels[r]) {
			correct++
		}
		var sum float64
		for i, v := range z {
			e := math.Exp(float64(v - z[best]))
			p[i] = float32(e)
			sum += e
		}
		logSum := math.Log(sum)
		for i := range p {
			t := off
			if i == int(labels[r]) {
				t = on
			}
			logp := float64(z[i]-z[best]) - logSum
			total -= float64(t) * logp
			p[i] = (float32(float64(p[i])/sum) - t) / float32(n)
		}
	}
	return total / float64(n), g, correct
}
