package chart

import (
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// legend is a plot.Plotter drawing a boxed legend in the lower-right corner
// of the data area, icons before labels as in matplotlib. gonum/plot's own
// legend has no background, so curves running under it make it hard to
// read. Add it to the plot last so that it is drawn over the data.
type legend struct {
	entries []legendEntry
}

// legendEntry is one line of a legend.
type legendEntry struct {
	label string
	icon  plot.Thumbnailer
}

// add appends an entry.
func (l *legend) add(label string, icon plot.Thumbnailer) {
	l.entries = append(l.entries, legendEntry{label, icon})
}

// Plot draws the legend; it implements plot.Plotter.
func (l *legend) Plot(c draw.Canvas, _ *plot.Plot) {
	if len(l.entries) == 0 {
		return
	}
	sty := text.Style{
		Font:    sans(10, false),
		Color:   textColor,
		XAlign:  draw.XLeft,
		YAlign:  draw.YCenter,
		Handler: plot.DefaultTextHandler,
	}
	var (
		pad    = vg.Points(6)
		inset  = vg.Points(8)
		iconW  = vg.Points(22)
		gap    = vg.Points(6)
		lineH  = sty.Font.Size * 1.6
		labelW vg.Length
	)
	for _, e := range l.entries {
		labelW = max(labelW, sty.Width(e.label))
	}
	w := pad + iconW + gap + labelW + pad
	h := pad + lineH*vg.Length(len(l.entries)) + pad
	box := vg.Rectangle{
		Min: vg.Point{X: c.Max.X - inset - w, Y: c.Min.Y + inset},
		Max: vg.Point{X: c.Max.X - inset, Y: c.Min.Y + inset + h},
	}
	c.SetColor(color.NRGBA{0xff, 0xff, 0xff, 0xe6})
	c.Fill(box.Path())
	c.SetLineStyle(draw.LineStyle{Color: gridColor, Width: vg.Points(0.8)})
	c.Stroke(box.Path())

	for i, e := range l.entries {
		mid := box.Max.Y - pad - lineH*(vg.Length(i)+0.5)
		icon := draw.Canvas{
			Canvas: c.Canvas,
			Rectangle: vg.Rectangle{
				Min: vg.Point{X: box.Min.X + pad, Y: mid - lineH/2},
				Max: vg.Point{X: box.Min.X + pad + iconW, Y: mid + lineH/2},
			},
		}
		e.icon.Thumbnail(&icon)
		c.FillText(sty, vg.Point{X: icon.Max.X + gap, Y: mid}, e.label)
	}
}
