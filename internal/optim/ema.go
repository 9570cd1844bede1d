package optim

import "github.com/fashion-classifier/fashion/internal/nn"

// EMA keeps an exponential moving average of a network's parameters,
// buffers included (batch-norm running statistics are averaged like the
// weights, as timm's ModelEma does). The averaged weights usually test
// better than the last step's, for free: an update is one multiply-add per
// value.
//
// Early on the average would be dominated by the random initial weights,
// so update t uses the decay min(Decay, (1+t)/(10+t)), TensorFlow's
// num_updates warm-up.
type EMA struct {
	Decay float32
	steps int
	avg   map[string][]float32
}

// NewEMA returns an average with the given per-step decay, e.g. 0.999.
func NewEMA(decay float32) *EMA { return &EMA{Decay: decay, avg: map[string][]float32{}} }

// Update folds the current values of params into the average.
func (e *EMA) Update(params []*nn.Param) {
	d := min(e.Decay, float32(1+e.steps)/float32(10+e.steps))
	e.steps++
	for _, p := range params {
		a := e.slot(p)
		for i, v := range p.Value {
			a[i] = d*a[i] + (1-d)*v
		}
	}
}

func (e *EMA) slot(p *nn.Param) []float32 {
	a, ok := e.avg[p.Name]
	if !ok {
		a = append([]float32(nil), p.Value...)
		e.avg[p.Name] = a
	}
	return a
}

// CopyTo writes the average into dst, parameters matched by name; a
// parameter never averaged gets its own current value (the average of no
// updates).
func (e *EMA) CopyTo(dst []*nn.Param) {
	for _, p := range dst {
		copy(p.Value, e.slot(p))
	}
}

// State returns the averages, named "ema.<parameter>", and the update count
// as a one-value slot "ema.steps", so checkpoints can save them; restore
// them by copying into the returned slices and calling SetSteps.
func (e *EMA) State(params []*nn.Param) map[string][]float32 {
	for _, p := range params {
		e.slot(p)
	}
	s := prefixed("ema.", e.avg)
	s["ema.steps"] = []float32{float32(e.steps)}
	return s
}

// SetSteps restores the update count after loading State's slots.
func (e *EMA) SetSteps(n int) { e.steps = n }
