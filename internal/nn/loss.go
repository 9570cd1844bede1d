package nn

import (
	"fmt"
	"math"
)

// CrossEntropy is softmax cross-entropy with label smoothing: the target
// puts 1−Smoothing on the true class and spreads Smoothing evenly over all
// classes (Szegedy et al. 2016), which discourages over-confident logits.
//
// Sets make set-valued targets possible (a photo folder of "shoes" that
// does not say which of sandal, sneaker or ankle boot): a label k at or
// above the number of classes stands for the classes Sets[k−classes], and
// its loss is −log Σ_{c∈S} p_c (with the same smoothing), which is the
// ordinary loss for a set of one class.
type CrossEntropy struct {
	Smoothing float32
	Sets      [][]int
	grad      *Tensor
}

// Loss returns the mean loss over the batch, the gradient with respect to
// the logits (owned by c, overwritten on the next call) and how many rows'
// largest logit is the label (or in the label's set).
func (c *CrossEntropy) Loss(logits *Tensor, labels []uint8) (float64, *Tensor, int) {
	return c.Distill(logits, labels, nil, 0)
}

// Distill is Loss with knowledge distillation (Hinton et al. 2015): each
// row's loss is (1−weight)·Loss + weight·(−Σ_i q_i log p_i), where q, a
// row of teacher (n×classes, rows summing to 1), is what earlier models
// answer for the same image. A teacher's probabilities say which wrong
// classes are nearly right (a shirt that looks like a T-shirt), which a
// one-hot label cannot. The gradient of the teacher's term is
// weight·(p_i − q_i). A nil teacher or weight 0 is Loss.
func (c *CrossEntropy) Distill(logits *Tensor, labels []uint8, teacher []float32, weight float32) (float64, *Tensor, int) {
	n, k := logits.N, logits.H*logits.W*logits.C
	if len(labels) != n {
		panic(fmt.Sprintf("nn: %d labels for %d rows of logits", len(labels), n))
	}
	if teacher == nil {
		weight = 0
	} else if len(teacher) != n*k {
		panic(fmt.Sprintf("nn: %d teacher probabilities for %d×%d logits", len(teacher), n, k))
	}
	hard := 1 - weight
	g := reuse(&c.grad, n, 1, 1, k)
	off := c.Smoothing / float32(k)
	var total float64
	correct := 0
	in := make([]bool, k)
	for r := range n {
		z := logits.Data[r*k : (r+1)*k]
		p := g.Data[r*k : (r+1)*k]
		clear(in)
		if l := int(labels[r]); l < k {
			in[l] = true
		} else if l-k < len(c.Sets) {
			for _, i := range c.Sets[l-k] {
				in[i] = true
			}
		} else {
			panic(fmt.Sprintf("nn: label %d is neither a class (of %d) nor a set (of %d)", l, k, len(c.Sets)))
		}
		best := 0
		for i, v := range z {
			if v > z[best] {
				best = i
			}
		}
		if in[best] {
			correct++
		}
		var sum, setSum float64
		for i, v := range z {
			e := math.Exp(float64(v - z[best]))
			p[i] = float32(e)
			sum += e
			if in[i] {
				setSum += e
			}
		}
		logSum := math.Log(sum)
		// Loss: (1−s)·(−log P_S) + s·mean_i(−log p_i), P_S = Σ_{c∈S} p_c;
		// gradient: p_i − (1−s)·[i∈S]·p_i/P_S − s/k.
		total -= float64(hard*(1-c.Smoothing)) * (math.Log(setSum) - logSum)
		for i := range p {
			logp := float64(z[i]-z[best]) - logSum
			t := off
			if in[i] {
				t += (1 - c.Smoothing) * float32(float64(p[i])/setSum)
			}
			t *= hard
			total -= float64(hard*off) * logp
			if weight != 0 {
				q := teacher[r*k+i]
				t += weight * q
				total -= float64(weight*q) * logp
			}
			p[i] = (float32(float64(p[i])/sum) - t) / float32(n)
		}
	}
	return total / float64(n), g, correct
}
