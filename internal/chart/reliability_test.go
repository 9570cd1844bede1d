package chart

import (
	"bytes"
	"image/png"
	"testing"

	"github.com/fashion-classifier/fashion/internal/eval"
)

func TestReliabilityPNG(t *testing.T) {
	bins, _ := eval.Reliability([]float64{0.95, 0.9, 0.6, 0.55}, []bool{true, true, false, true}, 10)
	var b bytes.Buffer
	if err := ReliabilityPNG(&b, []ReliabilityCurve{{Name: "raw", Bins: bins}}, "test"); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if r := img.Bounds(); r.Dx() != reliabilitySide || r.Dy() != reliabilitySide {
		t.Errorf("size %v", r)
	}
	if err := ReliabilityPNG(&b, nil, ""); err == nil {
		t.Error("no curves accepted")
	}
}
