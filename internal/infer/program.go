// Package infer runs compiled inference programs: the one way every model
// is evaluated, whether it came from an ONNX graph (package onnx) or from
// our own networks (Compile, with batch norms folded into the layers
// before them). A Program is a list of steps over numbered buffers
// ("slots") built once by a front end; it is immutable afterwards and
// shared by every goroutine. Each run has its own State: the slots'
// buffers and the kernels' scratch memory, and nothing else. A slot's
// buffer goes back to the state once its last reader has run, for the
// slots written after it: a run holds the buffers of the slots that are
// live at once, not one per slot.
//
// The steps call package kernels, so training and inference share every
// convolution, pooling and activation kernel.
package infer

import (
	"fmt"
	"slices"

	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/kernels"
	"github.com/fashion-classifier/fashion/internal/parallel"
)

// Step is one operation of a program: it reads and writes the slots of a
// State for a batch of n images. Front ends build them with the exported
// step types of this package.
type Step interface {
	run(st *State, n int)
	// prepare finishes a step once the front end is done changing it
	// (fusing scales and activations).
	prepare()
	// String says what the step computes and with which kernel, for
	// tools and for tests that compare programs (Program.Describe).
	String() string
	// inputs are the slots the step reads.
	inputs() []int
}

// Program is a compiled network: steps that map the input slot to the
// output slot for a batch of any size. Build one with a Builder.
type Program struct {
	steps   []Step
	slots   int
	in, out int
	inSize  int  // values per input image
	outSize int  // values per output image
	probs   bool // the output is already probabilities (a final softmax)
	macs    int  // multiply-adds per image of convolutions and products
	// dead[i] are the slots whose last reader is step i (never the input
	// or output slot): their buffers are free for the steps after it.
	dead [][]int
}

// InSize is the number of input values per image.
func (p *Program) InSize() int { return p.inSize }

// OutSize is the number of output values (class scores) per image.
func (p *Program) OutSize() int { return p.outSize }

// Probs reports whether the program's output already is probabilities.
func (p *Program) Probs() bool { return p.probs }

// MACs is the number of multiply-adds per image of the program's
// convolutions and matrix products, as the front end counted them.
func (p *Program) MACs() int { return p.macs }

// Steps is the number of steps, for tests that check what was fused.
func (p *Program) Steps() int { return len(p.steps) }

// Builder assembles a Program; front ends use it.
type Builder struct {
	prog *Program
}

// NewBuilder starts a program whose input has inSize values per image;
// the input is slot Input().
func NewBuilder(inSize int) *Builder {
	return &Builder{prog: &Program{slots: 1, in: 0, inSize: inSize}}
}

// Input is the input slot.
func (b *Builder) Input() int { return b.prog.in }

// Slot allocates a new slot.
func (b *Builder) Slot() int {
	b.prog.slots++
	return b.prog.slots - 1
}

// SetMACs records the multiply-adds per image (see Program.MACs).
func (b *Builder) SetMACs(n int) { b.prog.macs = n }

// Add appends a step. Its slots must come from Input or Slot.
func (b *Builder) Add(s Step) { b.prog.steps = append(b.prog.steps, s) }

// MoveLast moves step s, already added, to the end of the program, after
// the steps added since: for a front end that fuses into s an input
// computed later (Conv.FuseAdd with a shortcut compiled after the
// residual body). Only valid when no step after s reads its output;
// every slot is written by one step, so s's own inputs stay computed
// before it.
func (b *Builder) MoveLast(s Step) {
	steps := b.prog.steps
	if i := slices.Index(steps, s); i >= 0 {
		b.prog.steps = append(slices.Delete(steps, i, i+1), s)
	}
}

// Finish returns the program whose output is slot out with outSize values
// per image (probabilities when probs is set). The builder must not be
// used afterwards.
func (b *Builder) Finish(out, outSize int, probs bool) (*Program, error) {
	p := b.prog
	b.prog = nil
	if out < 0 || out >= p.slots || outSize < 1 {
		return nil, fmt.Errorf("infer: output slot %d of %d values is not valid", out, outSize)
	}
	for _, s := range p.steps {
		s.prepare()
	}
	p.out, p.outSize, p.probs = out, outSize, probs
	p.planBuffers()
	return p, nil
}

// planBuffers sets p.dead from the steps' inputs: each slot other than
// the input and the output dies after the last step that reads it.
func (p *Program) planBuffers() {
	last := make([]int, p.slots)
	for i := range last {
		last[i] = -1
	}
	for i, s := range p.steps {
		for _, in := range s.inputs() {
			if in >= 0 && in < p.slots {
				last[in] = i
			}
		}
	}
	p.dead = make([][]int, len(p.steps))
	for slot, i := range last {
		if i >= 0 && slot != p.in && slot != p.out {
			p.dead[i] = append(p.dead[i], slot)
		}
	}
}

// State holds the buffers of one run of a program. A program is immutable
// and shared; each concurrent run has its own state.
type State struct {
	// bufs[slot] is the slot's values while it is live: a view of one of
	// store's buffers (phys[slot]), or the caller's input.
	bufs [][]float32
	// store holds the buffers the slots share; free are the ones no live
	// slot holds, taken last in first out, so that every run (every
	// batch size) hands the same slots the same buffers.
	store [][]float32
	phys  []int
	free  []int
	// u8 holds the slots that int8 layers pass to each other as uint8
	// codes (see chainU8); the others are nil.
	u8      [][]uint8
	scratch kernels.Scratch
}

// NewState returns empty buffers for runs of p.
func (p *Program) NewState() *State {
	st := &State{bufs: make([][]float32, p.slots), u8: make([][]uint8, p.slots), phys: make([]int, p.slots)}
	for i := range st.phys {
		st.phys[i] = -1
	}
	return st
}

// get returns slot's buffer resized to size values, reallocating only when
// it is too small. Its contents are not cleared. A slot without a buffer
// takes a free one, or a new one.
func (s *State) get(slot, size int) []float32 {
	k := s.phys[slot]
	if k < 0 {
		if n := len(s.free); n > 0 {
			k, s.free = s.free[n-1], s.free[:n-1]
		} else {
			k = len(s.store)
			s.store = append(s.store, nil)
		}
		s.phys[slot] = k
	}
	s.bufs[slot] = kernels.Grow(&s.store[k], size)
	return s.bufs[slot]
}

// release gives slot's buffer back; reading the slot afterwards is a bug
// that panics (its view is nil).
func (s *State) release(slot int) {
	if k := s.phys[slot]; k >= 0 {
		s.free = append(s.free, k)
		s.phys[slot] = -1
	}
	s.bufs[slot] = nil
}

// start begins a run on the caller's input x: every buffer is free again,
// in the order that hands them out as the first run did.
func (p *Program) start(st *State, x []float32) {
	for slot := range st.phys {
		st.phys[slot] = -1
	}
	st.free = st.free[:0]
	for k := len(st.store) - 1; k >= 0; k-- {
		st.free = append(st.free, k)
	}
	st.bufs[p.in] = x
}

// step runs step i and frees the buffers of the slots it read last.
func (p *Program) step(st *State, i, n int) {
	p.steps[i].run(st, n)
	for _, slot := range p.dead[i] {
		st.release(slot)
	}
}

// Run computes n images x (n·InSize values) with st's buffers and returns
// the output slot (n·OutSize values, owned by st until its next run). x
// is not modified, and not referenced once Run returns.
func (p *Program) Run(st *State, x []float32, n int) []float32 {
	return p.RunObserved(st, x, n, nil)
}

// RunObserved is Run that calls after(i), when it is not nil, once step i
// has finished, for tools that time each step (cmd/layertime).
func (p *Program) RunObserved(st *State, x []float32, n int, after func(step int)) []float32 {
	p.start(st, x[:n*p.inSize])
	for i := range p.steps {
		p.step(st, i, n)
		if after != nil {
			after(i)
		}
	}
	st.bufs[p.in] = nil
	return st.bufs[p.out][:n*p.outSize]
}

// Step returns step i, for tools that describe a program.
func (p *Program) Step(i int) Step { return p.steps[i] }

// Describe returns one line per step: the operation, its shapes, its
// fused activation and the kernel it runs (after Finish), without slot
// numbers. Two programs with equal descriptions run the same kernels on
// the same shapes; only their weights differ.
func (p *Program) Describe() []string {
	out := make([]string, len(p.steps))
	for i, s := range p.steps {
		out[i] = s.String()
	}
	return out
}

// Memory is the number of float32s a state holds after a run: the slots'
// buffers (the kernels' scratch is bounded apart, per worker).
func (st *State) Memory() int {
	n := 0
	for _, b := range st.store {
		n += cap(b)
	}
	for _, b := range st.u8 {
		n += (cap(b) + 3) / 4
	}
	return n
}

// MaxChunk bounds how many images one run of a program takes; fewer are
// taken when one image needs much memory (see chunkBudget).
const MaxChunk = 256

// chunkBudget bounds the buffer memory of one run, in float32s (256 MiB).
const chunkBudget = 1 << 26

// Predictor runs a program on batches of any size. It is safe for
// concurrent use: each concurrent call takes its own State from a free
// list and shares only the immutable program.
type Predictor struct {
	prog  *Program
	chunk int
	// free holds the states of finished runs for the next ones. A bounded
	// free list rather than a sync.Pool: a pool is emptied by every
	// garbage collection, and reallocating a batch's buffers under load
	// costs more than keeping a few.
	free chan *State
	// temp divides the logits before Predict's softmax (calibration by
	// temperature scaling); 1 leaves them as they are.
	temp float32
}

// NewPredictor returns a predictor running p. It runs one image of zeros
// through p to size the buffers, which fixes how many images fit in one
// run's memory budget.
func NewPredictor(p *Program) *Predictor {
	pr := &Predictor{prog: p, free: make(chan *State, max(2, parallel.Workers())), temp: 1}
	st := p.NewState()
	p.Run(st, make([]float32, p.inSize), 1)
	pr.chunk = min(MaxChunk, max(1, chunkBudget/max(st.Memory(), 1)))
	pr.put(st)
	return pr
}

// SetTemperature makes Predict divide the logits by t before the softmax:
// the temperature fitted by `fashion calibrate`, recorded in the model
// file. t ≤ 0 means 1. Call it before the predictor is shared; it has no
// effect on a program that ends in its own softmax.
func (pr *Predictor) SetTemperature(t float64) {
	pr.temp = 1
	if t > 0 {
		pr.temp = float32(t)
	}
}

// Program returns the program the predictor runs.
func (pr *Predictor) Program() *Program { return pr.prog }

func (pr *Predictor) get() *State {
	select {
	case st := <-pr.free:
		return st
	default:
		return pr.prog.NewState()
	}
}

func (pr *Predictor) put(st *State) {
	select {
	case pr.free <- st:
	default: // more concurrent callers than kept states: let this one go
	}
}

// Logits runs the program on n images x (n·InSize values) and returns its
// n×OutSize outputs as the program computes them (probabilities if it
// ends in a softmax).
func (pr *Predictor) Logits(x []float32, n int) ([]float32, error) {
	p := pr.prog
	if n < 0 || len(x) != n*p.inSize {
		return nil, fmt.Errorf("infer: got %d input values for %d images of %d values", len(x), n, p.inSize)
	}
	st := pr.get()
	defer pr.put(st)
	k := p.outSize
	out := make([]float32, n*k)
	for n0 := 0; n0 < n; n0 += pr.chunk {
		n1 := min(n0+pr.chunk, n)
		copy(out[n0*k:n1*k], p.Run(st, x[n0*p.inSize:n1*p.inSize], n1-n0))
	}
	return out, nil
}

// Predict returns n×OutSize probabilities (row-major) for n images x.
func (pr *Predictor) Predict(x []float32, n int) ([]float32, error) {
	out, err := pr.Logits(x, n)
	if err != nil || pr.prog.probs {
		return out, err
	}
	pr.Softmax(out, n)
	return out, nil
}

// Softmax turns n rows of logits, as Logits returns them, into
// probabilities in place at the predictor's temperature.
func (pr *Predictor) Softmax(logits []float32, n int) {
	k := pr.prog.outSize
	for r := range n {
		row := logits[r*k : (r+1)*k]
		if pr.temp != 1 {
			for i := range row {
				row[i] /= pr.temp
			}
		}
		eval.Softmax(row, row)
	}
}
