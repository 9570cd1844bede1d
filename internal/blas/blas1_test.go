package blas

import (
	"testing"
)

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
