package chart

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Training-curve figure size in pixels.
const (
	curvesWidth  = 1200
	curvesHeight = 480
)

// Epoch is one epoch of a training history: the mean training loss, the
// training and test accuracy (fractions in [0, 1]) and the learning rate at
// the end of the epoch. A NaN field means "not measured" and is left out of
// its curve; an LR of zero in every epoch leaves out the learning-rate panel.
type Epoch struct {
	Epoch     int
	TrainLoss float64
	TrainAcc  float64
	TestAcc   float64
	LR        float64
}

// Series colours, from matplotlib's default cycle so the figures look
// familiar next to those of the report.
var (
	blue   = color.RGBA{0x1f, 0x77, 0xb4, 0xff}
	orange = color.RGBA{0xff, 0x7f, 0x0e, 0xff}
	green  = color.RGBA{0x2c, 0xa0, 0x2c, 0xff}
)

// CurvesPNG writes a 1200×480-pixel PNG of a training history: side-by-side
// panels for the training loss, for the training and test accuracy (with
// the best test accuracy marked) and for the learning-rate schedule, each
// panel only when the history has values for it. Each panel has a grid, and the accuracy panel a
// legend. The title goes above the panels; an empty title leaves no gap.
//
// It returns an error, without writing anything, if history is empty, its
// epochs are not strictly increasing, or it holds no finite loss or
// accuracy value to plot.
func CurvesPNG(w io.Writer, history []Epoch, title string) error {
	if len(history) == 0 {
		return errors.New("chart: training history is empty")
	}
	for i := 1; i < len(history); i++ {
		if history[i].Epoch <= history[i-1].Epoch {
			return fmt.Errorf("chart: training history is not in epoch order: entry %d is epoch %d after epoch %d",
				i, history[i].Epoch, history[i-1].Epoch)
		}
	}
	loss := series(history, func(e Epoch) float64 { return e.TrainLoss })
	trainAcc := series(history, func(e Epoch) float64 { return e.TrainAcc })
	testAcc := series(history, func(e Epoch) float64 { return e.TestAcc })
	lr := series(history, func(e Epoch) float64 { return e.LR })
	if len(loss) == 0 && len(trainAcc) == 0 && len(testAcc) == 0 {
		return errors.New("chart: training history has no finite loss or accuracy values")
	}
	hasLR := false
	for _, p := range lr {
		hasLR = hasLR || p.Y != 0
	}

	return render(w, "training curves", curvesWidth, curvesHeight, func(cv *vgimg.Canvas) error {
		dc := draw.New(cv)
		if title != "" {
			dc.Max.Y -= drawTitle(dc, title, (dc.Min.X+dc.Max.X)/2)
		}
		// A panel is drawn only when it has something to show, and all
		// panels share the epoch range so that they can be read across.
		var (
			plots  []*plot.Plot
			titles []string
		)
		if len(loss) > 0 {
			plots = append(plots, lossPanel(loss))
			titles = append(titles, "Training loss")
		}
		if len(trainAcc) > 0 || len(testAcc) > 0 {
			plots = append(plots, accuracyPanel(trainAcc, testAcc))
			titles = append(titles, "Accuracy")
		}
		if hasLR {
			plots = append(plots, lrPanel(lr))
			titles = append(titles, "Learning rate")
		}
		for _, p := range plots {
			p.X.Min = float64(history[0].Epoch)
			p.X.Max = float64(history[len(history)-1].Epoch)
		}
		// Panel titles are drawn here rather than by each plot so that they
		// line up even when the panels' data areas are placed differently
		// within their tiles.
		titleStyle := text.Style{
			Font:    sans(12.5, true),
			Color:   textColor,
			XAlign:  draw.XCenter,
			YAlign:  draw.YTop,
			Handler: plot.DefaultTextHandler,
		}
		titleTop := dc.Max.Y - vg.Points(4)
		tiles := draw.Tiles{
			Rows: 1, Cols: len(plots),
			PadX: vg.Points(30), PadLeft: vg.Points(8), PadRight: vg.Points(16),
			PadTop:    vg.Points(4) + titleStyle.Height("Ag") + vg.Points(12),
			PadBottom: vg.Points(8),
		}
		canvases := plot.Align([][]*plot.Plot{plots}, tiles, dc)
		for i, p := range plots {
			p.Draw(canvases[0][i])
			data := p.DataCanvas(canvases[0][i])
			dc.FillText(titleStyle, vg.Point{X: (data.Min.X + data.Max.X) / 2, Y: titleTop}, titles[i])
		}
		return nil
	})
}

// series returns the finite values of one field of history as points keyed
// by epoch.
func series(history []Epoch, field func(Epoch) float64) plotter.XYs {
	var xy plotter.XYs
	for _, e := range history {
		if v := field(e); finite(v) {
			xy = append(xy, plotter.XY{X: float64(e.Epoch), Y: v})
		}
	}
	return xy
}

// newPanel returns a plot styled for one panel of the curves figure: sans
// fonts, an integer epoch axis, five to nine labelled values on the y axis
// and a light grid.
func newPanel(ylabel string) *plot.Plot {
	p := plot.New()
	p.X.Label.Text = "Epoch"
	p.Y.Label.Text = ylabel
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = sans(11, false)
		a.Label.TextStyle.Color = textColor
		a.Tick.Label.Font = sans(10, false)
		a.Tick.Label.Color = textColor
		a.LineStyle.Color = textColor
		a.Tick.LineStyle.Color = textColor
		a.Padding = vg.Points(4)
	}
	p.X.Tick.Marker = integerTicks{}
	p.Y.Tick.Marker = niceTicks{}
	grid := plotter.NewGrid()
	grid.Vertical.Color = gridColor
	grid.Horizontal.Color = gridColor
	p.Add(grid)
	return p
}

// addLine adds xy to p as a line in col, with point markers when there are
// few enough epochs for them to stay apart, and returns the line for a
// legend. It adds nothing and returns nil for an empty series.
func addLine(p *plot.Plot, xy plotter.XYs, col color.Color) plot.Thumbnailer {
	if len(xy) == 0 {
		return nil
	}
	l, s, err := plotter.NewLinePoints(xy)
	if err != nil {
		// series only keeps finite values, so this is a bug.
		panic(fmt.Sprintf("chart: plotting %d points: %v", len(xy), err))
	}
	l.Color = col
	l.Width = vg.Points(1.8)
	if len(xy) > 40 {
		p.Add(l)
		return l
	}
	s.Color = col
	s.Shape = draw.CircleGlyph{}
	s.Radius = vg.Points(2.2)
	p.Add(l, s)
	return lineAndPoints{l, s}
}

// lineAndPoints shows a line with its markers in a legend.
type lineAndPoints struct {
	line   *plotter.Line
	points *plotter.Scatter
}

// Thumbnail draws the legend icon; it implements plot.Thumbnailer.
func (lp lineAndPoints) Thumbnail(c *draw.Canvas) {
	lp.line.Thumbnail(c)
	lp.points.Thumbnail(c)
}

// lossPanel plots the training loss.
func lossPanel(loss plotter.XYs) *plot.Plot {
	p := newPanel("Loss")
	addLine(p, loss, blue)
	return p
}

// accuracyPanel plots training and test accuracy and marks the epoch with
// the best test accuracy.
func accuracyPanel(train, test plotter.XYs) *plot.Plot {
	p := newPanel("Accuracy")
	var lg legend
	if l := addLine(p, train, blue); l != nil {
		lg.add("train", l)
	}
	if l := addLine(p, test, orange); l != nil {
		lg.add("test", l)
		best := 0
		for i, pt := range test {
			if pt.Y > test[best].Y {
				best = i
			}
		}
		mark, err := plotter.NewScatter(plotter.XYs{test[best]})
		if err != nil {
			panic(fmt.Sprintf("chart: marking best test accuracy: %v", err))
		}
		mark.Shape = draw.RingGlyph{}
		mark.Radius = vg.Points(6)
		mark.Color = orange
		p.Add(mark)
		lg.add(fmt.Sprintf("best test %.4f (epoch %d)", test[best].Y, int(test[best].X)), mark)
	}
	// Accuracy rises over training, so the lower right is the free corner.
	p.Add(&lg)
	return p
}

// lrPanel plots the learning-rate schedule.
func lrPanel(lr plotter.XYs) *plot.Plot {
	p := newPanel("Learning rate")
	addLine(p, lr, green)
	p.Y.Min = math.Min(0, p.Y.Min)
	return p
}

// maxTicks bounds the number of ticks a ticker returns, so that no axis
// range, however odd, can make one loop for long.
const maxTicks = 50

// integerTicks labels an epoch axis at whole numbers only, with a round
// step that leaves at most seven labels, which fit side by side in a panel
// even with three-digit epochs.
type integerTicks struct{}

// Ticks returns the tick marks; it implements plot.Ticker.
func (integerTicks) Ticks(lo, hi float64) []plot.Tick {
	span := hi - lo
	if !finite(span) || span < 0 {
		return edgeTicks(lo, hi)
	}
	step := 1.0
	for _, s := range []float64{1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000} {
		step = s
		if span/s < 7 {
			break
		}
	}
	if span/step >= 7 {
		step = math.Ceil(span / 6)
	}
	// Start at a multiple of step so labels read 5, 10, 15 rather than
	// 1, 6, 11; keep the first whole epoch when that leaves no tick.
	start := math.Ceil(lo/step) * step
	if start > hi {
		start = math.Ceil(lo)
	}
	if start+step == start {
		return edgeTicks(lo, hi)
	}
	return stepTicks(lo, hi, start, step, 0)
}

// niceTicks places five to nine major ticks at round values (steps of 1, 2,
// 2.5 or 5 times a power of ten), each labelled with just enough decimals
// to tell them apart. gonum/plot's DefaultTicks labels only two or three
// values on a short axis, which leaves the grid too sparse to read values
// from.
type niceTicks struct{}

// Ticks returns the tick marks; it implements plot.Ticker.
func (niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !finite(hi-lo) || !(hi > lo) {
		return edgeTicks(lo, hi)
	}
	// The smallest round step giving at most eight intervals, which
	// leaves five to nine labels.
	raw := (hi - lo) / 8
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	// Steps near the subnormal range cannot be scaled exactly.
	if !(step > 1e-290) || !finite(step) {
		return edgeTicks(lo, hi)
	}
	prec := max(0, -int(math.Floor(math.Log10(step)+1e-9)))
	if m := step * math.Pow(10, float64(prec)); math.Abs(m-math.Round(m)) > 1e-6 {
		prec++ // steps like 0.25 need one more digit than 0.2
	}
	start := math.Ceil(lo/step-1e-9) * step
	if start+step == start {
		return edgeTicks(lo, hi)
	}
	return stepTicks(lo, hi, start, step, prec)
}

// edgeTicks labels just the ends of an axis whose range is too wide, or too
// narrow for its magnitude, for round steps, as happens only with absurd data; an empty or
// non-finite range gets no ticks.
func edgeTicks(lo, hi float64) []plot.Tick {
	label := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	if !finite(lo) || !finite(hi) || !(hi > lo) {
		return nil
	}
	return []plot.Tick{{Value: lo, Label: label(lo)}, {Value: hi, Label: label(hi)}}
}

// stepTicks returns the ticks start, start+step, … that lie in [lo, hi]
// (with a little tolerance for rounding), labelled with prec decimals. Each
// value is computed from its index rather than by repeated addition, so
// rounding neither accumulates nor, for a step below the spacing of floats
// near start, stalls; the count is capped at maxTicks.
func stepTicks(lo, hi, start, step float64, prec int) []plot.Tick {
	tol := step * 1e-9
	var ticks []plot.Tick
	for i := range maxTicks {
		v := start + float64(i)*step
		if v > hi+tol {
			break
		}
		if v < lo-tol || len(ticks) > 0 && v <= ticks[len(ticks)-1].Value {
			continue // rounding at large magnitudes
		}
		if v == 0 {
			v = 0 // turn -0 into 0 so it is not labelled "-0"
		}
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', prec, 64)})
	}
	return ticks
}
