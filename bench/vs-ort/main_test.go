package main

import (
	"strings"
	"testing"
	"time"
)

func TestFigure(t *testing.T) {
	if got := figure(1, 4, 2*time.Millisecond); got != 0.5 {
		t.Errorf("batch 1: %v ms per call, want 0.5", got)
	}
	if got := figure(256, 10, time.Second); got != 2560 {
		t.Errorf("batch 256: %v img/s, want 2560", got)
	}
}

func TestStartORTWithoutNode(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := startORT(config{cache: t.TempDir(), threads: 2, model: "x.onnx"})
	if err == nil || !strings.Contains(err.Error(), "Node.js") {
		t.Fatalf("startORT without node: %v, want an error naming Node.js", err)
	}
}

// TestOrdersAreBalanced checks that the round orders are the six
// permutations, so each contender directly follows each other one equally
// often within rounds.
func TestOrdersAreBalanced(t *testing.T) {
	seen := map[[3]int]bool{}
	follows := map[[2]int]int{}
	for _, o := range orders {
		if seen[o] {
			t.Fatalf("order %v twice", o)
		}
		seen[o] = true
		var in [3]bool
		for i, c := range o {
			in[c] = true
			if i > 0 {
				follows[[2]int{o[i-1], c}]++
			}
		}
		if in != [3]bool{true, true, true} {
			t.Fatalf("order %v is not a permutation", o)
		}
	}
	if len(seen) != 6 {
		t.Fatalf("%d orders, want 6", len(seen))
	}
	for pair, n := range follows {
		if n != 2 {
			t.Errorf("%d follows %d in %d orders, want 2", pair[1], pair[0], n)
		}
	}
}
