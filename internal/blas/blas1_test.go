package blas

import (
	"math"
	"testing"
)

func TestDot(t *testing.T) {
	tests := []struct {
		name string
		a, b []float32
		want float32
	}{
		{"empty", nil, nil, 0},
		{"one", []float32{3}, []float32{-2}, -6},
		{"five", []float32{1, 2, 3, 4, 5}, []float32{5, 4, 3, 2, 1}, 35},
		{"nine", []float32{1, 1, 1, 1, 1, 1, 1, 1, 1}, []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}, 45},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Dot(tt.a, tt.b); got != tt.want {
				t.Errorf("Dot = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDotRandom(t *testing.T) {
	rng := newRand(1)
	for _, n := range []int{1, 3, 4, 17, 1000} {
		a, b := randSlice(rng, n), randSlice(rng, n)
		var want, mag float64
		for i := range a {
			want += float64(a[i]) * float64(b[i])
			mag += math.Abs(float64(a[i]) * float64(b[i]))
		}
		got := Dot(a, b)
		if d := math.Abs(float64(got) - want); d > 1e-5*mag+1e-6 {
			t.Errorf("n=%d: Dot = %v, want %v (|diff| %g)", n, got, want, d)
		}
	}
}

func TestAxpy(t *testing.T) {
	tests := []struct {
		name  string
		alpha float32
		x, y  []float32
		want  []float32
	}{
		{"empty", 2, nil, nil, nil},
		{"scale", 2, []float32{1, 2, 3}, []float32{1, 1, 1}, []float32{3, 5, 7}},
		{"negative", -0.5, []float32{2, 4}, []float32{0, 1}, []float32{-1, -1}},
		{"zero alpha", 0, []float32{5, 6}, []float32{7, 8}, []float32{7, 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := append([]float32(nil), tt.y...)
			Axpy(tt.alpha, tt.x, y)
			for i := range tt.want {
				if y[i] != tt.want[i] {
					t.Fatalf("y = %v, want %v", y, tt.want)
				}
			}
		})
	}
}

func TestBLAS1LengthMismatchPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"Dot":  func() { Dot(make([]float32, 2), make([]float32, 3)) },
		"Axpy": func() { Axpy(1, make([]float32, 3), make([]float32, 2)) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with mismatched lengths did not panic", name)
				}
			}()
			f()
		})
	}
}
