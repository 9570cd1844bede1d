// Command layertime times each layer of a network's training step
// (forward and backward) on a random batch, in wall-clock and process CPU
// time. The ratio of the two shows how well a layer uses the cores: a
// layer whose CPU time is close to its wall time runs on one core. With
// -infer it times the steps of the compiled inference program instead
// (package infer: batch norms folded, activations fused), as served.
//
// Usage:
//
//	layertime [-arch vgg] [-batch 128] [-steps 20] [-infer]
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"text/tabwriter"
	"time"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/nn"
	"github.com/fashion-classifier/fashion/internal/optim"

	"github.com/fashion-classifier/fashion/internal/cputime"
)

func main() {
	archName := flag.String("arch", "vgg", "architecture (see fashion train -h)")
	batch := flag.Int("batch", 128, "images per batch")
	steps := flag.Int("steps", 20, "timed steps, after one warm-up step")
	inference := flag.Bool("infer", false, "time the compiled inference program's steps instead of training")
	flag.Parse()
	if err := run(*archName, *batch, *steps, *inference); err != nil {
		fmt.Fprintln(os.Stderr, "layertime:", err)
		os.Exit(1)
	}
}

// run builds the named network with a fixed seed and times its training
// step, or with inference its compiled inference program.
func run(archName string, batch, steps int, inference bool) error {
	if batch < 1 || steps < 1 {
		return fmt.Errorf("batch (%d) and steps (%d) must be positive", batch, steps)
	}
	a, err := arch.LookupArch(archName)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	net := a.Build(rng, len(modelfile.FashionClasses))
	if inference {
		return runInference(net, rng, batch, steps)
	}
	return runTraining(net, rng, batch, steps)
}

// timing accumulates the wall and CPU time of one phase of one layer.
type timing struct{ wall, cpu time.Duration }

func (t *timing) add(w0 time.Time, c0 time.Duration) {
	t.wall += time.Since(w0)
	t.cpu += cpuTime() - c0
}

// perStep returns the mean wall milliseconds per step over steps steps and
// the ratio of CPU time to wall time (0 when nothing was timed).
func (t timing) perStep(steps int) (ms, cpuPerWall float64) {
	ms = t.wall.Seconds() * 1e3 / float64(steps)
	if t.wall == 0 {
		return ms, 0
	}
	return ms, t.cpu.Seconds() / t.wall.Seconds()
}

// runTraining times each layer's forward and backward pass, the loss and
// the optimizer step of net, built from rng, on random images.
func runTraining(net *nn.Sequential, rng *rand.Rand, batch, steps int) error {
	params := net.Params()
	x := nn.NewTensor(batch, modelfile.Side, modelfile.Side, 1)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	labels := make([]uint8, batch)
	for i := range labels {
		labels[i] = uint8(rng.IntN(len(modelfile.FashionClasses)))
	}
	ce := &nn.CrossEntropy{Smoothing: 0.1}
	opt := &optim.SGD{Momentum: 0.9, Nesterov: true, WeightDecay: 5e-4}
	layers := net.Layers
	fwd, bwd := make([]timing, len(layers)), make([]timing, len(layers))
	var loss, step timing
	var total timing
	for s := 0; s <= steps; s++ {
		if s == 1 {
			// The first step allocates every buffer; it is not timed.
			clear(fwd)
			clear(bwd)
			loss, step, total = timing{}, timing{}, timing{}
		}
		tw, tc := time.Now(), cpuTime()
		y := x
		for i, l := range layers {
			w0, c0 := time.Now(), cpuTime()
			y = l.Forward(y, true)
			fwd[i].add(w0, c0)
		}
		{
			w0, c0 := time.Now(), cpuTime()
			_, g, _ := ce.Loss(y, labels)
			loss.add(w0, c0)
			for i := len(layers) - 1; i >= 0; i-- {
				w0, c0 := time.Now(), cpuTime()
				g = layers[i].Backward(g)
				bwd[i].add(w0, c0)
			}
			w0, c0 = time.Now(), cpuTime()
			opt.Step(params, 0.01)
			step.add(w0, c0)
		}
		total.add(tw, tc)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "layer\ttype\tfwd ms\tfwd cpu/wall\tbwd ms\tbwd cpu/wall\t")
	per := func(t timing) (float64, float64) { return t.perStep(steps) }
	for i, l := range layers {
		fw, fr := per(fwd[i])
		bw, br := per(bwd[i])
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.3f\t%.2f\t%.3f\t\n", layerName(net, i), reflect.TypeOf(l).Elem().Name(), fw, fr, bw, br)
	}
	lw, lr := per(loss)
	sw, sr := per(step)
	fmt.Fprintf(tw, "loss\t\t%.2f\t%.3f\t\t\t\n", lw, lr)
	fmt.Fprintf(tw, "optimizer\t\t\t\t%.2f\t%.3f\t\n", sw, sr)
	totw, totr := per(total)
	fmt.Fprintf(tw, "step\t\t%.2f\t%.3f\t\t\t\n", totw, totr)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Printf("%.0f images/s\n", float64(batch)/(totw/1e3))
	return nil
}

// runInference times each step of net's compiled inference program on
// random images from rng.
func runInference(net *nn.Sequential, rng *rand.Rand, batch, steps int) error {
	prog, err := infer.Compile(net, modelfile.Side, modelfile.Side, 1)
	if err != nil {
		return err
	}
	x := make([]float32, batch*prog.InSize())
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	st := prog.NewState()
	times := make([]timing, prog.Steps())
	var total timing
	for s := 0; s <= steps; s++ {
		if s == 1 {
			// The first run allocates every buffer; it is not timed.
			clear(times)
			total = timing{}
		}
		tw, tc := time.Now(), cpuTime()
		w0, c0 := tw, tc
		prog.RunObserved(st, x, batch, func(i int) {
			times[i].add(w0, c0)
			w0, c0 = time.Now(), cpuTime()
		})
		total.add(tw, tc)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\tms\tcpu/wall\tstep (kernel)\t")
	per := func(t timing) (float64, float64) { return t.perStep(steps) }
	for i, t := range times {
		ms, r := per(t)
		fmt.Fprintf(tw, "%d\t%.2f\t%.2f\t%s\t\n", i, ms, r, prog.Step(i))
	}
	totw, totr := per(total)
	fmt.Fprintf(tw, "run\t%.2f\t%.2f\t\t\n", totw, totr)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Printf("%.0f images/s\n", float64(batch)/(totw/1e3))
	return nil
}

func layerName(s *nn.Sequential, i int) string {
	if i < len(s.Names) && s.Names[i] != "" {
		return s.Names[i]
	}
	return fmt.Sprint(i)
}

// cpuTime returns the CPU time used so far by the whole process (0 where
// the system does not say).
func cpuTime() time.Duration {
	d, _ := cputime.Process()
	return d
}
