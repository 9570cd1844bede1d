package chart

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/fashion-classifier/fashion/internal/eval"
)

// Confusion-matrix figure size in pixels.
const (
	confusionWidth  = 900
	confusionHeight = 800
)

// ConfusionPNG writes c as a 900×800-pixel PNG heatmap in the style of a
// seaborn confusion matrix: true classes down the side, predicted classes
// along the bottom (labels rotated so long names do not collide), each cell
// shaded on a white-to-blue scale by its count with the count written in it,
// and a colour bar for the scale. The title goes above the matrix; an empty
// title leaves no gap.
//
// It returns an error, without writing anything, if c is nil, has no
// classes, has a Counts matrix that is not len(Classes)×len(Classes), holds
// a negative count or holds no samples at all.
func ConfusionPNG(w io.Writer, c *eval.Confusion, title string) error {
	if err := checkConfusion(c); err != nil {
		return err
	}
	return render(w, "confusion matrix", confusionWidth, confusionHeight, func(cv *vgimg.Canvas) error {
		drawConfusion(draw.New(cv), c, title)
		return nil
	})
}

// checkConfusion reports what, if anything, makes c impossible to draw.
func checkConfusion(c *eval.Confusion) error {
	if c == nil {
		return errors.New("chart: confusion matrix is nil")
	}
	k := len(c.Classes)
	if k == 0 {
		return errors.New("chart: confusion matrix has no classes")
	}
	if len(c.Counts) != k {
		return fmt.Errorf("chart: confusion matrix has %d rows for %d classes", len(c.Counts), k)
	}
	total := 0
	for t, row := range c.Counts {
		if len(row) != k {
			return fmt.Errorf("chart: confusion matrix row %d (%q) has %d columns for %d classes", t, c.Classes[t], len(row), k)
		}
		for p, v := range row {
			if v < 0 {
				return fmt.Errorf("chart: confusion matrix cell [%d][%d] has negative count %d", t, p, v)
			}
			total += v
		}
	}
	if total == 0 {
		return errors.New("chart: confusion matrix holds no samples")
	}
	return nil
}

// drawConfusion lays out the heatmap and its colour bar on dc.
func drawConfusion(dc draw.Canvas, c *eval.Confusion, title string) {
	k := len(c.Classes)
	maxCount := 0
	for _, row := range c.Counts {
		for _, v := range row {
			maxCount = max(maxCount, v)
		}
	}

	p := plot.New()
	p.BackgroundColor = color.Transparent

	// Row t is drawn at y = k-1-t so that the first class is at the top,
	// as in a printed matrix.
	xTicks := make([]plot.Tick, k)
	yTicks := make([]plot.Tick, k)
	for i, name := range c.Classes {
		xTicks[i] = plot.Tick{Value: float64(i), Label: name}
		yTicks[i] = plot.Tick{Value: float64(k - 1 - i), Label: name}
	}
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Min, a.Max = -0.5, float64(k)-0.5
		a.Padding = 0
		a.LineStyle.Width = 0
		a.Tick.LineStyle.Color = textColor
		a.Tick.LineStyle.Width = vg.Points(0.8)
		a.Tick.Length = vg.Points(4)
		a.Tick.Label.Font = sans(10.5, false)
		a.Tick.Label.Color = textColor
		a.Label.TextStyle.Font = sans(12, true)
		a.Label.TextStyle.Color = textColor
		a.Label.Padding = vg.Points(8)
	}
	p.X.Tick.Marker = plot.ConstantTicks(xTicks)
	p.Y.Tick.Marker = plot.ConstantTicks(yTicks)
	p.X.Tick.Label.XAlign = draw.XCenter
	p.X.Tick.Label.YAlign = draw.YTop
	p.X.Label.Text = "Predicted class"
	p.Y.Label.Text = "True class"

	p.Add(&cells{counts: c.Counts, max: maxCount})

	// The title goes on top and the colour bar takes a fixed strip on the
	// right; the matrix gets the rest. The title is drawn last, centred on
	// the matrix once that has been placed.
	dc = draw.Crop(dc, px(10), -px(10), px(10), -px(14)) // outer margin
	area := dc
	if title != "" {
		area.Max.Y -= titleHeight(title, dc.Max.X-dc.Min.X)
	}
	const barStrip = 110 // pixels
	area.Max.X -= px(barStrip)

	// Class names shrink with the cells so that neighbours do not run into
	// each other, and the names along the bottom are turned 45° only when
	// they are wider than a cell, as matplotlib users do by hand.
	data := p.DataCanvas(area)
	cell := min(data.Max.X-data.Min.X, data.Max.Y-data.Min.Y) / vg.Length(k)
	labelFont := sans(min(max(cell*0.5, 6), 10.5), false)
	p.X.Tick.Label.Font = labelFont
	p.Y.Tick.Label.Font = labelFont
	widest := vg.Length(0)
	for _, name := range c.Classes {
		widest = max(widest, p.X.Tick.Label.Width(name))
	}
	if widest > cell*0.9 {
		p.X.Tick.Label.Rotation = math.Pi / 4
		p.X.Tick.Label.XAlign = draw.XRight
	}

	// Square cells: give up whichever extent is in excess.
	data = p.DataCanvas(area)
	if w, h := data.Max.X-data.Min.X, data.Max.Y-data.Min.Y; w > h {
		area.Max.X -= w - h
	} else {
		area.Min.Y += h - w
	}
	p.Draw(area)
	if title != "" {
		data := p.DataCanvas(area)
		drawTitle(dc, title, (data.Min.X+data.Max.X)/2)
	}

	data = p.DataCanvas(area)
	bar := vg.Rectangle{
		Min: vg.Point{X: area.Max.X + px(24), Y: data.Min.Y},
		Max: vg.Point{X: area.Max.X + px(24+22), Y: data.Max.Y},
	}
	drawColorBar(dc, bar, maxCount)
}

// cells is a plot.Plotter drawing the shaded, annotated cells of a
// confusion matrix. It is used instead of plotter.HeatMap because each
// cell's text colour must follow its fill colour.
type cells struct {
	counts [][]int
	max    int
}

// Plot draws the cells; it implements plot.Plotter.
func (g *cells) Plot(c draw.Canvas, p *plot.Plot) {
	k := len(g.counts)
	trX, trY := p.Transforms(&c)
	cellW := trX(0.5) - trX(-0.5)
	cellH := trY(0.5) - trY(-0.5)
	// Numbers sized to the cell, so that a 10-class matrix reads at normal
	// body size and a larger one still fits.
	size := min(max(min(cellW, cellH)*0.24, 6), 13)
	digits := len(strconv.Itoa(g.max))
	if fit := cellW * 0.85 / (vg.Length(digits) * 0.56); size > fit {
		size = max(fit, 4)
	}
	style := text.Style{
		Font:    sans(size, false),
		XAlign:  draw.XCenter,
		YAlign:  draw.YCenter,
		Handler: p.Title.TextStyle.Handler,
	}
	for t, row := range g.counts {
		y := float64(k - 1 - t)
		for pr, v := range row {
			x := float64(pr)
			rect := vg.Rectangle{
				Min: vg.Point{X: trX(x - 0.5), Y: trY(y - 0.5)},
				Max: vg.Point{X: trX(x + 0.5), Y: trY(y + 0.5)},
			}
			fill := bluesAt(float64(v) / float64(g.max))
			c.SetColor(fill)
			c.Fill(rect.Path())
			style.Color = textColor
			if isDark(fill) {
				style.Color = color.White
			}
			center := vg.Point{X: (rect.Min.X + rect.Max.X) / 2, Y: (rect.Min.Y + rect.Max.Y) / 2}
			c.FillText(style, center, strconv.Itoa(v))
		}
	}
}

// DataRange reports the extent of the cells; it implements plot.DataRanger.
func (g *cells) DataRange() (xmin, xmax, ymin, ymax float64) {
	k := float64(len(g.counts))
	return -0.5, k - 0.5, -0.5, k - 0.5
}

// drawColorBar draws a vertical Blues scale from 0 (bottom) to maxCount
// (top) in r, with labelled ticks at round values on its right, the way
// seaborn shows a heatmap's scale.
func drawColorBar(c draw.Canvas, r vg.Rectangle, maxCount int) {
	// The gradient is an image one pixel per row of the bar, so scaling it
	// into place does not blur or band it.
	h := r.Max.Y - r.Min.Y
	rows := max(int(math.Round(h.Dots(dpi))), 2)
	img := image.NewRGBA(image.Rect(0, 0, 1, rows))
	for y := range rows {
		img.SetRGBA(0, y, bluesAt(1-float64(y)/float64(rows-1)))
	}
	c.DrawImage(r, img)

	line := draw.LineStyle{Color: textColor, Width: vg.Points(0.8)}
	label := text.Style{
		Font:    sans(10, false),
		Color:   textColor,
		XAlign:  draw.XLeft,
		YAlign:  draw.YCenter,
		Handler: plot.DefaultTextHandler,
	}
	ticks := niceTicks{}.Ticks(0, float64(maxCount))
	if maxCount < 8 {
		ticks = integerTicks{}.Ticks(0, float64(maxCount))
	}
	for _, t := range ticks {
		y := r.Min.Y + h*vg.Length(t.Value/float64(maxCount))
		c.StrokeLine2(line, r.Max.X, y, r.Max.X+vg.Points(4), y)
		c.FillText(label, vg.Point{X: r.Max.X + vg.Points(6), Y: y}, t.Label)
	}
}
