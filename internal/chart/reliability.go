package chart

import (
	"errors"
	"fmt"
	"image/color"
	"io"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/fashion-classifier/fashion/internal/eval"
)

// Reliability-diagram size in pixels.
const reliabilitySide = 640

// ReliabilityCurve is one calibration state of a reliability diagram.
type ReliabilityCurve struct {
	Name string // legend entry, e.g. "before (ECE 0.041)"
	Bins []eval.Bin
}

// ReliabilityPNG writes a square PNG reliability diagram: for each curve,
// the accuracy of each non-empty confidence bin against its mean
// confidence, with the diagonal of perfect calibration.
func ReliabilityPNG(w io.Writer, curves []ReliabilityCurve, title string) error {
	if len(curves) == 0 {
		return errors.New("chart: no reliability curves")
	}
	return render(w, "reliability diagram", reliabilitySide, reliabilitySide, func(cv *vgimg.Canvas) error {
		dc := draw.New(cv)
		if title != "" {
			dc.Max.Y -= drawTitle(dc, title, (dc.Min.X+dc.Max.X)/2)
		}
		p := newPanel("Accuracy")
		p.X.Label.Text = "Confidence"
		p.X.Tick.Marker = niceTicks{}
		p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
		diag, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 1}})
		if err != nil {
			return err
		}
		diag.Color = color.RGBA{0x99, 0x99, 0x99, 0xff}
		diag.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(diag)
		p.Legend.Add("perfect calibration", diag)
		cols := []color.Color{orange, blue, green}
		for i, c := range curves {
			var xy plotter.XYs
			for _, b := range c.Bins {
				if b.N > 0 {
					xy = append(xy, plotter.XY{X: b.Confidence, Y: b.Accuracy})
				}
			}
			if len(xy) == 0 {
				return fmt.Errorf("chart: reliability curve %q is empty", c.Name)
			}
			if l := addLine(p, xy, cols[i%len(cols)]); l != nil {
				p.Legend.Add(c.Name, l)
			}
		}
		p.Legend.Top, p.Legend.Left = true, true
		p.Legend.TextStyle.Font = sans(10, false)
		p.Legend.TextStyle.Color = textColor
		p.Draw(dc)
		return nil
	})
}
