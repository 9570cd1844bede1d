package chart

import (
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"

	"golang.org/x/image/draw"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// GridCell is one example of a photo grid: the photo, the 28×28 image
// the model saw for it, and caption lines (folder, answer).
type GridCell struct {
	Photo   image.Image
	Input   *image.Gray
	Caption []string
}

// Photo-grid cell geometry in pixels.
const (
	gridThumb   = 112 // photo and input are drawn this size, side by side
	gridLine    = 14
	gridPad     = 6
	gridCaption = 3 // caption lines
)

// PhotoGridPNG writes the cells as a PNG grid of cols columns: each cell
// shows the photo (scaled to fit 112×112), the model's input enlarged
// pixel for pixel, and up to three caption lines under them.
func PhotoGridPNG(w io.Writer, cells []GridCell, cols int) error {
	if len(cells) == 0 || cols < 1 {
		return errors.New("chart: empty photo grid")
	}
	cw := 2*gridThumb + 3*gridPad
	ch := gridThumb + gridCaption*gridLine + 3*gridPad
	rows := (len(cells) + cols - 1) / cols
	img := image.NewRGBA(image.Rect(0, 0, cols*cw, rows*ch))
	draw.Draw(img, img.Rect, image.NewUniform(color.White), image.Point{}, draw.Src)
	face := basicfont.Face7x13
	for i, c := range cells {
		x0, y0 := (i%cols)*cw+gridPad, (i/cols)*ch+gridPad
		if c.Photo != nil {
			b := c.Photo.Bounds()
			tw, th := gridThumb, gridThumb
			if b.Dx() > b.Dy() {
				th = max(1, gridThumb*b.Dy()/b.Dx())
			} else {
				tw = max(1, gridThumb*b.Dx()/max(b.Dy(), 1))
			}
			ox, oy := x0+(gridThumb-tw)/2, y0+(gridThumb-th)/2
			draw.BiLinear.Scale(img, image.Rect(ox, oy, ox+tw, oy+th), c.Photo, b, draw.Src, nil)
		}
		if c.Input != nil {
			r := image.Rect(x0+gridThumb+gridPad, y0, x0+2*gridThumb+gridPad, y0+gridThumb)
			draw.NearestNeighbor.Scale(img, r, c.Input, c.Input.Rect, draw.Src, nil)
		}
		d := font.Drawer{Dst: img, Src: image.NewUniform(color.Black), Face: face}
		for l, line := range c.Caption {
			if l >= gridCaption {
				break
			}
			d.Dot = fixed.P(x0, y0+gridThumb+gridPad+(l+1)*gridLine-3)
			for len(line) > 0 && d.MeasureString(line).Ceil() > cw-2*gridPad {
				line = line[:len(line)-1]
			}
			d.DrawString(line)
		}
	}
	return png.Encode(w, img)
}
