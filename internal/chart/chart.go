// Package chart renders the evaluation and training figures shown in the
// model card and written by the CLI: a confusion-matrix heatmap and training
// curves, as PNG images.
//
// Rendering is pure Go (gonum.org/v1/plot with its embedded Liberation
// fonts), so it works in the static, cgo-free binary, and it is
// deterministic: the same input always yields byte-identical PNG output,
// which keeps committed figures stable across regenerations.
package chart

import (
	"fmt"
	"image/color"
	"io"
	"math"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// dpi is the resolution every figure is rendered at. Sizes are chosen in
// pixels and converted to points with it, so a 900-pixel-wide figure is
// exactly 900 pixels wide.
const dpi = 100

// px converts a length in pixels at dpi to plot points.
func px(n int) vg.Length { return vg.Length(n) * vg.Inch / dpi }

// sans returns the sans-serif font at size points, matching the look of
// matplotlib/seaborn figures rather than gonum/plot's serif default.
func sans(size vg.Length, bold bool) font.Font {
	f := font.Font{Typeface: "Liberation", Variant: "Sans", Size: size}
	if bold {
		f.Weight = xfont.WeightBold
	}
	return f
}

// Colours shared by the figures.
var (
	textColor = color.RGBA{0x26, 0x26, 0x26, 0xff}
	gridColor = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
)

// newCanvas returns a white image canvas of w×h pixels.
func newCanvas(w, h int) *vgimg.Canvas {
	return vgimg.NewWith(vgimg.UseWH(px(w), px(h)), vgimg.UseDPI(dpi))
}

// render draws a figure with draw and writes it to w as PNG. gonum/plot
// reports some impossible layouts (for instance a canvas too small for its
// labels) by panicking; render turns such a panic into an error so that a
// figure never takes the CLI down with it.
func render(w io.Writer, what string, width, height int, draw func(c *vgimg.Canvas) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("chart: rendering %s: %v", what, r)
		}
	}()
	c := newCanvas(width, height)
	if err := draw(c); err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(w); err != nil {
		return fmt.Errorf("chart: writing %s PNG: %w", what, err)
	}
	return nil
}

// Title placement, in points: space above the title, below it and at its
// sides.
const (
	titleTop    = 12
	titleBottom = 8
	titleMargin = 8
)

// titleStyle returns the style of a figure title set in a canvas width
// wide: bold, and smaller than usual if that is what it takes to fit.
func titleStyle(title string, width vg.Length) text.Style {
	sty := text.Style{
		Font:    sans(15, true),
		Color:   textColor,
		XAlign:  draw.XCenter,
		YAlign:  draw.YTop,
		Handler: plot.DefaultTextHandler,
	}
	avail := width - 2*titleMargin
	if w := sty.Width(title); w > avail {
		sty.Font.Size = max(sty.Font.Size*avail/w, 6)
	}
	return sty
}

// titleHeight returns the height drawTitle uses for title in a canvas
// width wide.
func titleHeight(title string, width vg.Length) vg.Length {
	return titleTop + titleStyle(title, width).Height(title) + titleBottom
}

// drawTitle writes title at the top of c, centred on x but kept inside c,
// and returns the height it used (see titleHeight). A title too wide for c
// is set smaller rather than cut off.
func drawTitle(c draw.Canvas, title string, x vg.Length) vg.Length {
	width := c.Max.X - c.Min.X
	sty := titleStyle(title, width)
	half := min(sty.Width(title), width-2*titleMargin) / 2
	x = min(max(x, c.Min.X+titleMargin+half), c.Max.X-titleMargin-half)
	c.FillText(sty, vg.Point{X: x, Y: c.Max.Y - titleTop}, title)
	return titleHeight(title, width)
}

// finite reports whether v is neither NaN nor ±Inf.
func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
