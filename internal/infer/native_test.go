package infer_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fashion-classifier/fashion/internal/arch"
	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/nn"
)

// randomise gives every parameter and batch-norm statistic random values,
// so that folding mistakes (a wrong channel, a missing shift) show.
func randomise(rng *rand.Rand, net *nn.Sequential) {
	for _, p := range net.Params() {
		for i := range p.Value {
			switch {
			case p.Kind == nn.Buffer && strings.HasSuffix(p.Name, "running_var"):
				p.Value[i] = 0.5 + rng.Float32()
			case p.Kind == nn.Buffer:
				p.Value[i] = float32(rng.NormFloat64() * 0.3)
			case p.Kind == nn.NoDecay:
				p.Value[i] = 1 + float32(rng.NormFloat64()*0.2)
			default:
				p.Value[i] += float32(rng.NormFloat64() * 0.01)
			}
		}
	}
}

// TestCompileMatchesTraining compares the compiled program of every
// architecture with the training layers' inference-mode forward pass.
func TestCompileMatchesTraining(t *testing.T) {
	for name, a := range arch.Archs() {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			net := a.Build(rng, 10)
			randomise(rng, net)
			prog, err := infer.Compile(net, 28, 28, 1)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{1, 3, 17} {
				x := make([]float32, n*28*28)
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
				want := net.Forward(&nn.Tensor{N: n, H: 28, W: 28, C: 1, Data: x}, false).Data
				got, err := infer.NewPredictor(prog).Logits(x, n)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Fatalf("n=%d: %d outputs, want %d", n, len(got), len(want))
				}
				worst := 0.0
				for i := range want {
					d := math.Abs(float64(got[i] - want[i]))
					if !(d <= 1e-3*math.Max(1, math.Abs(float64(want[i])))) {
						t.Fatalf("n=%d: logit %d = %v, training layers give %v", n, i, got[i], want[i])
					}
					worst = max(worst, d)
				}
				t.Logf("n=%d: %d steps, max |compiled − training| = %.2g", n, prog.Steps(), worst)
			}
			// The input of the weights was copied: changing the network
			// leaves the program alone.
			x := make([]float32, 28*28)
			before, _ := infer.NewPredictor(prog).Logits(x, 1)
			for _, p := range net.Params() {
				clear(p.Value)
			}
			after, _ := infer.NewPredictor(prog).Logits(x, 1)
			for i := range before {
				if before[i] != after[i] {
					t.Fatalf("program changed with the network's weights: %v, then %v", before, after)
				}
			}
		})
	}
}

// TestPredictorConcurrent runs one predictor from many goroutines with
// different batch sizes; each must get the answer of a lone run.
func TestPredictorConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	a, err := arch.LookupArch("mobilenetv3-small")
	if err != nil {
		t.Fatal(err)
	}
	net := a.Build(rng, 10)
	randomise(rng, net)
	prog, err := infer.Compile(net, 28, 28, 1)
	if err != nil {
		t.Fatal(err)
	}
	pr := infer.NewPredictor(prog)
	inputs, wants := make([][]float32, 8), make([][]float32, 8)
	for g := range inputs {
		n := 1 + g%3*5
		inputs[g] = make([]float32, n*28*28)
		for i := range inputs[g] {
			inputs[g][i] = float32(rng.NormFloat64())
		}
		if wants[g], err = pr.Predict(inputs[g], n); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range inputs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				got, err := pr.Predict(inputs[g], len(inputs[g])/(28*28))
				if err != nil {
					t.Error(err)
					return
				}
				for i := range got {
					if got[i] != wants[g][i] {
						t.Errorf("goroutine %d: probability %d = %v, alone %v", g, i, got[i], wants[g][i])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if _, err := pr.Logits(make([]float32, 5), 1); err == nil {
		t.Error("5 input values for one image were accepted")
	}
}

func TestCompileRejects(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for name, net := range map[string]*nn.Sequential{
		"channels":    nn.NewSequential(nn.NewConv2D(rng, 3, 4, 3, 1, 1, false)),
		"linear size": nn.NewSequential(&nn.Flatten{}, nn.NewLinear(rng, 10, 2)),
		"pool":        nn.NewSequential(nn.NewMaxPool(40, 2)),
	} {
		if _, err := infer.Compile(net, 28, 28, 1); err == nil {
			t.Errorf("%s: compiled", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestCompileFoldsAndFuses checks a network with every folding case
// against the training layers: batch norms after convolutions (with and
// without a fused ReLU, inside a residual body), after a pool (nothing to
// fold into: a per-channel affine step) and activations with nothing to
// fuse into.
func TestCompileFoldsAndFuses(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	bnrelu := nn.NewBatchNorm(6)
	bnrelu.ReLU = true
	net := nn.NewSequential(
		nn.NewConv2D(rng, 1, 6, 3, 1, 1, false), bnrelu,
		nn.NewResidual(nn.NewSequential(nn.NewConv2D(rng, 6, 6, 1, 1, 0, false), nn.NewBatchNorm(6))),
		nn.NewConv2D(rng, 6, 8, 3, 2, 1, true), nn.NewBatchNorm(8), nn.NewActivation(nn.HardSwish),
		nn.NewMaxPool(2, 2), nn.NewBatchNorm(8), nn.NewActivation(nn.HardSigmoid),
		nn.NewActivation(nn.ReLU),
		&nn.Flatten{}, nn.NewLinear(rng, 8*3*3, 5), nn.NewBatchNorm(5),
	)
	randomise(rng, net)
	prog, err := infer.Compile(net, 13, 11, 1)
	if err != nil {
		t.Fatal(err)
	}
	n := 3
	x := make([]float32, n*13*11)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	want := net.Forward(&nn.Tensor{N: n, H: 13, W: 11, C: 1, Data: x}, false).Data
	got, err := infer.NewPredictor(prog).Logits(x, n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); !(d <= 1e-4*math.Max(1, math.Abs(float64(want[i])))) {
			t.Fatalf("output %d = %v, training layers give %v", i, got[i], want[i])
		}
	}
	// conv+bn+relu, residual conv+bn, add, conv+bn+hard-swish, pool, the
	// batch norm after the pool (affine), its two activations, linear+bn.
	if got, want := prog.Steps(), 9; got != want {
		t.Errorf("%d steps, want %d", got, want)
	}
	// Every convolution and product names the parameter its weights came
	// from, as the model file names it.
	wantW := []string{"0.weight", "2.body.0.weight", "3.weight", "11.weight"}
	if got := prog.FloatWeights(); !slices.Equal(got, wantW) {
		t.Errorf("FloatWeights = %q, want %q", got, wantW)
	}
	names := map[string]bool{}
	for _, p := range net.Params() {
		names[p.Name] = true
	}
	for _, w := range prog.Int8Weights() {
		if !names[w] {
			t.Errorf("Int8Weights names %q, not a parameter of the network", w)
		}
	}
}

// TestCompileFusesResidualSum: a residual block whose body ends in a 3×3
// convolution and batch norm, followed by ReLU, compiles to the
// convolution taking the sum and the ReLU, and computes what the training
// layers compute; a batch norm after the block is not folded into it.
func TestCompileFusesResidualSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	body := func() *nn.Sequential {
		return nn.NewSequential(nn.NewConv2D(rng, 8, 8, 3, 1, 1, false), nn.NewBatchNorm(8))
	}
	for _, tc := range []struct {
		name  string
		tail  []nn.Layer
		steps int
	}{
		{"relu", []nn.Layer{nn.NewActivation(nn.ReLU)}, 2},
		{"batch norm", []nn.Layer{nn.NewBatchNorm(8)}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			net := nn.NewSequential(append([]nn.Layer{nn.NewConv2D(rng, 1, 8, 3, 1, 1, true), nn.NewResidual(body())}, tc.tail...)...)
			randomise(rng, net)
			prog, err := infer.Compile(net, 9, 11, 1)
			if err != nil {
				t.Fatal(err)
			}
			if got := prog.Steps(); got != tc.steps {
				t.Errorf("%d steps, want %d:\n%s", got, tc.steps, strings.Join(prog.Describe(), "\n"))
			}
			if d := prog.Describe(); !strings.Contains(d[1], "winograd+add") {
				t.Errorf("step 1 is %s, want the convolution taking the sum", d[1])
			}
			n := 3
			x := make([]float32, n*9*11)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			want := net.Forward(&nn.Tensor{N: n, H: 9, W: 11, C: 1, Data: x}, false).Data
			got := prog.Run(prog.NewState(), x, n)
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); !(d <= 1e-4*math.Max(1, math.Abs(float64(want[i])))) {
					t.Fatalf("output %d = %v, training layers give %v", i, got[i], want[i])
				}
			}
		})
	}
}
