package imageprep

import (
	"fmt"
	"image"
	"image/color"
	"math"

	"golang.org/x/image/draw"
)

// trimTolerance is the paper's trim distance: 5% of the maximum intensity.
const trimTolerance = 0.05 * 255

// darkLevel is the gray value below which a border pixel counts as dark
// background for IsDatasetLike, and darkFraction the share of border pixels
// that must be dark. Dataset objects touch the border on some rows (wide
// garments, bags), so not every border pixel is dark.
const (
	darkLevel    = 64
	darkFraction = 0.5
)

// workSide bounds the working image of the pipeline. An image whose long
// edge is 2×workSide pixels or more is reduced while it is converted to gray
// (see toGray), so every later step works on fewer than 2×workSide pixels
// per edge, whatever the input's size.
const workSide = 1024

// workBytes bounds what ToInput allocates for any input: the working gray
// image (under 2×workSide on each edge), the row sums and the conversion
// buffer of toGray, and the 28-pixel buffers of steps 3–8, plus the object
// search on its reduced copy (objectBytes).
const workBytes = (2*workSide)*(2*workSide) + 2*workSide*8 + 64<<10 + objectBytes

// Input is an image as the model sees it: the 28×28 gray image, and
// whether the image was dataset-like (IsDatasetLike: already a
// Fashion-MNIST-style image, used as it is) or was converted from a photo.
// DatasetLike is what picks the answering model when two are served
// (package predictor's Routed): the benchmark model for dataset-like
// inputs, the photo model for the rest. Once converted, every input looks
// dataset-like, so the flag is decided here, from the image as it came.
type Input struct {
	*image.Gray
	DatasetLike bool
}

// Prepare decodes an encoded image with Decode (lim as there) and converts it
// with ToInput: the one call that turns uploaded or fetched bytes into the
// model's 28×28 input. What it allocates for an image it accepts is bounded
// by lim.PeakBytes (68 MiB at the default limits): the decoded image, which
// Decode keeps within lim.MaxBytes, and ToInput's working memory, which
// depends on the size of the output, not of the input.
func Prepare(data []byte, lim Limits) (Input, error) {
	img, _, err := Decode(data, lim)
	if err != nil {
		return Input{}, fmt.Errorf("preparing image: %w", err)
	}
	return ToInput(img), nil
}

// ToInput returns the 28×28 grayscale image the model sees for img. An
// image that is already dataset-like (IsDatasetLike) is only converted to
// gray; any other goes through the Fashion-MNIST conversion described in the
// package documentation. The result always has bounds (0,0)-(28,28); an
// empty img gives an all-black image (not dataset-like: it is no
// Fashion-MNIST image).
func ToInput(img image.Image) Input {
	if img.Bounds().Empty() {
		return Input{Gray: image.NewGray(image.Rect(0, 0, Side, Side))}
	}
	g := toGray(img, background(img))
	if isDatasetLikeGray(g) {
		return Input{Gray: g, DatasetLike: true}
	}
	return Input{Gray: objectInput(img, g)}
}

// IsDatasetLike reports whether img already looks like a Fashion-MNIST
// image: 28×28 with a mostly dark border. Such images are used as they are,
// so dataset images sent to the server are classified exactly as in
// evaluation.
func IsDatasetLike(img image.Image) bool {
	b := img.Bounds()
	if b.Dx() != Side || b.Dy() != Side {
		return false
	}
	return isDatasetLikeGray(toGray(img, background(img)))
}

// isDatasetLikeGray is IsDatasetLike on an already converted image.
func isDatasetLikeGray(g *image.Gray) bool {
	b := g.Bounds()
	if b.Dx() != Side || b.Dy() != Side {
		return false
	}
	dark, total := 0, 0
	for y := 0; y < Side; y++ {
		for x := 0; x < Side; x++ {
			if y != 0 && y != Side-1 && x != 0 && x != Side-1 {
				continue
			}
			total++
			if g.Pix[y*g.Stride+x] < darkLevel {
				dark++
			}
		}
	}
	return float64(dark) >= darkFraction*float64(total)
}

// Enlarge scales g up by an integer factor with nearest-neighbour sampling,
// so that users can see the model's input pixel for pixel instead of a
// blurred interpolation. factor is clamped to [1, 64].
func Enlarge(g *image.Gray, factor int) *image.Gray {
	factor = min(max(factor, 1), 64)
	b := g.Bounds()
	out := image.NewGray(image.Rect(0, 0, b.Dx()*factor, b.Dy()*factor))
	for y := 0; y < out.Rect.Dy(); y++ {
		src := g.Pix[(y/factor)*g.Stride : (y/factor)*g.Stride+b.Dx()]
		row := out.Pix[y*out.Stride : y*out.Stride+out.Rect.Dx()]
		for x := range row {
			row[x] = src[x/factor]
		}
	}
	return out
}

// background returns the gray value that transparent pixels are composited
// onto: the mean colour of the corner pixels that are mostly opaque, or
// white when all four corners are mostly transparent.
func background(img image.Image) uint8 {
	b := img.Bounds()
	if b.Empty() {
		return 255
	}
	corners := [4]image.Point{
		b.Min, {b.Max.X - 1, b.Min.Y}, {b.Min.X, b.Max.Y - 1}, {b.Max.X - 1, b.Max.Y - 1},
	}
	sum, n := 0, 0
	for _, p := range corners {
		c := color.NRGBAModel.Convert(img.At(p.X, p.Y)).(color.NRGBA)
		if c.A < 128 {
			continue
		}
		sum += int(luma8(c.R, c.G, c.B))
		n++
	}
	if n == 0 {
		return 255
	}
	return uint8((sum + n/2) / n)
}

// luma8 is color.GrayModel's BT.601 luma on 8-bit components.
func luma8(r, g, b uint8) uint8 {
	return uint8((19595*uint32(r) + 38470*uint32(g) + 7471*uint32(b) + 1<<15) >> 16)
}

// toGray converts img to an 8-bit gray image with bounds at the origin,
// compositing translucent pixels onto the gray level bg.
//
// An image whose long edge L is at least 2×workSide is reduced on the way
// by the integer factor f = L/workSide: each output pixel is the rounded mean
// of an f×f box of gray values (narrower at the right and bottom edges), so
// the result has fewer than 2×workSide pixels per edge. Rows are converted a
// chunk at a time straight from the decoded image and summed into one row of
// counters, so no full-resolution copy of any kind is made. BiLinear in step
// 3 then averages what is left, as it would have averaged the original.
//
// The decoders' image types have fast paths giving the same values as
// color conversion through At (except NYCbCrA, whose Y sample is taken as
// the luma as for YCbCr); anything else goes through At.
func toGray(img image.Image, bg uint8) *image.Gray {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	f := max(1, max(w, h)/workSide)
	ow, oh := (w+f-1)/f, (h+f-1)/f
	out := image.NewGray(image.Rect(0, 0, ow, oh))
	conv := grayRows(img, bg)
	if f == 1 {
		for y := range h {
			conv(out.Pix[y*out.Stride:y*out.Stride+w], 0, y)
		}
		return out
	}
	sums := make([]uint64, ow)
	buf := make([]uint8, min(w, 4096))
	for oy := range oh {
		clear(sums)
		y0, y1 := oy*f, min(oy*f+f, h)
		for y := y0; y < y1; y++ {
			for x0 := 0; x0 < w; x0 += len(buf) {
				part := buf[:min(len(buf), w-x0)]
				conv(part, x0, y)
				bx, left := x0/f, f-x0%f
				for _, v := range part {
					sums[bx] += uint64(v)
					if left--; left == 0 {
						bx, left = bx+1, f
					}
				}
			}
		}
		dst := out.Pix[oy*out.Stride : oy*out.Stride+ow]
		for bx := range dst {
			n := uint64(y1-y0) * uint64(min(f, w-bx*f))
			dst[bx] = uint8((sums[bx] + n/2) / n)
		}
	}
	return out
}

// grayRows returns a function that writes the gray values of len(dst)
// pixels of img, starting at column x of row y (both counted from the
// bounds' corner), into dst, with translucent pixels composited onto bg.
func grayRows(img image.Image, bg uint8) func(dst []uint8, x, y int) {
	b := img.Bounds()
	// over composites a premultiplied 16-bit luma with alpha a onto bg.
	over := func(y16, a uint32) uint8 {
		v := y16 + (0xffff-a)*uint32(bg)*0x101/0xffff
		return uint8(min(v, 0xffff) >> 8)
	}
	// luma16 is color.GrayModel's BT.601 luma on 16-bit components.
	luma16 := func(r, g, b uint32) uint32 { return (19595*r + 38470*g + 7471*b + 1<<15) >> 16 }
	switch src := img.(type) {
	case *image.Gray:
		return func(dst []uint8, x, y int) {
			copy(dst, src.Pix[src.PixOffset(b.Min.X+x, b.Min.Y+y):])
		}
	case *image.Gray16:
		return func(dst []uint8, x, y int) {
			row := src.Pix[src.PixOffset(b.Min.X+x, b.Min.Y+y):]
			for i := range dst {
				dst[i] = row[2*i] // the high byte
			}
		}
	case *image.YCbCr:
		// For JPEG's full-range BT.601 YCbCr the Y sample is the luma.
		return func(dst []uint8, x, y int) {
			copy(dst, src.Y[src.YOffset(b.Min.X+x, b.Min.Y+y):])
		}
	case *image.NYCbCrA:
		return func(dst []uint8, x, y int) {
			ys := src.Y[src.YOffset(b.Min.X+x, b.Min.Y+y):]
			as := src.A[src.AOffset(b.Min.X+x, b.Min.Y+y):]
			for i := range dst {
				a := uint32(as[i])
				dst[i] = uint8((uint32(ys[i])*a + uint32(bg)*(255-a) + 127) / 255)
			}
		}
	case *image.NRGBA:
		return func(dst []uint8, x, y int) {
			row := src.Pix[src.PixOffset(b.Min.X+x, b.Min.Y+y):]
			for i := range dst {
				p := row[4*i : 4*i+4 : 4*i+4]
				a := uint32(p[3])
				l := uint32(luma8(p[0], p[1], p[2]))
				dst[i] = uint8((l*a + uint32(bg)*(255-a) + 127) / 255)
			}
		}
	case *image.RGBA:
		return func(dst []uint8, x, y int) {
			row := src.Pix[src.PixOffset(b.Min.X+x, b.Min.Y+y):]
			for i := range dst {
				p := row[4*i : 4*i+4 : 4*i+4]
				a := uint32(p[3])
				// Premultiplied: luma is already scaled by alpha.
				l := uint32(luma8(p[0], p[1], p[2]))
				dst[i] = uint8(min((l*255+uint32(bg)*(255-a)+127)/255, 255))
			}
		}
	case *image.RGBA64:
		return func(dst []uint8, x, y int) {
			row := src.Pix[src.PixOffset(b.Min.X+x, b.Min.Y+y):]
			for i := range dst {
				p := row[8*i : 8*i+8 : 8*i+8]
				r, g, bl := uint32(p[0])<<8|uint32(p[1]), uint32(p[2])<<8|uint32(p[3]), uint32(p[4])<<8|uint32(p[5])
				dst[i] = over(luma16(r, g, bl), uint32(p[6])<<8|uint32(p[7]))
			}
		}
	case *image.NRGBA64:
		return func(dst []uint8, x, y int) {
			row := src.Pix[src.PixOffset(b.Min.X+x, b.Min.Y+y):]
			for i := range dst {
				p := row[8*i : 8*i+8 : 8*i+8]
				c := color.NRGBA64{uint16(p[0])<<8 | uint16(p[1]), uint16(p[2])<<8 | uint16(p[3]),
					uint16(p[4])<<8 | uint16(p[5]), uint16(p[6])<<8 | uint16(p[7])}
				r, g, bl, a := c.RGBA()
				dst[i] = over(luma16(r, g, bl), a)
			}
		}
	case *image.CMYK:
		return func(dst []uint8, x, y int) {
			row := src.Pix[src.PixOffset(b.Min.X+x, b.Min.Y+y):]
			for i := range dst {
				p := row[4*i : 4*i+4 : 4*i+4]
				r, g, bl, a := color.CMYK{p[0], p[1], p[2], p[3]}.RGBA()
				dst[i] = over(luma16(r, g, bl), a)
			}
		}
	case *image.Paletted:
		var lut [256]uint8
		for i, c := range src.Palette {
			r, g, bl, a := c.RGBA()
			lut[i] = over(luma16(r, g, bl), a)
		}
		return func(dst []uint8, x, y int) {
			row := src.Pix[src.PixOffset(b.Min.X+x, b.Min.Y+y):]
			for i := range dst {
				dst[i] = lut[row[i]]
			}
		}
	}
	return func(dst []uint8, x, y int) {
		for i := range dst {
			r, g, bl, a := img.At(b.Min.X+x+i, b.Min.Y+y).RGBA()
			dst[i] = over(luma16(r, g, bl), a)
		}
	}
}

// convert runs steps 2–8 of the package's pipeline on a gray image whose
// bounds start at the origin.
func convert(g *image.Gray) *image.Gray {
	w, h := g.Rect.Dx(), g.Rect.Dy()
	ref := (float64(g.Pix[0]) + float64(g.Pix[w-1]) +
		float64(g.Pix[(h-1)*g.Stride]) + float64(g.Pix[(h-1)*g.Stride+w-1])) / 4

	// 2. Trim.
	crop := trim(g, ref)

	// 3. Resize the longest edge to Side.
	cw, ch := crop.Dx(), crop.Dy()
	tw, th := fitSide(cw, ch)
	small := image.NewGray(image.Rect(0, 0, tw, th))
	draw.BiLinear.Scale(small, small.Rect, g, crop, draw.Src, nil)

	// 4. Sharpen.
	sharp := unsharp(small)

	// 5–8. Extend, negate, level, quantise.
	negate := ref > 127.5
	bgv := ref
	if negate {
		bgv = 255 - ref
	}
	level := func(v float64) uint8 {
		if negate {
			v = 255 - v
		}
		v = (v - bgv) * 255 / (255 - bgv)
		return uint8(math.Round(min(max(v, 0), 255)))
	}
	out := image.NewGray(image.Rect(0, 0, Side, Side))
	fill := level(ref)
	for i := range out.Pix {
		out.Pix[i] = fill
	}
	x0, y0 := (Side-tw)/2, (Side-th)/2
	for y := 0; y < th; y++ {
		for x := 0; x < tw; x++ {
			out.Pix[(y0+y)*out.Stride+x0+x] = level(sharp[y*tw+x])
		}
	}
	return out
}

// trim returns the smallest rectangle of g outside which every pixel is
// within trimTolerance of ref, or all of g if every pixel is.
func trim(g *image.Gray, ref float64) image.Rectangle {
	w, h := g.Rect.Dx(), g.Rect.Dy()
	differs := func(x, y int) bool {
		return math.Abs(float64(g.Pix[y*g.Stride+x])-ref) > trimTolerance
	}
	rowDiffers := func(y int) bool {
		for x := 0; x < w; x++ {
			if differs(x, y) {
				return true
			}
		}
		return false
	}
	colDiffers := func(x, y0, y1 int) bool {
		for y := y0; y < y1; y++ {
			if differs(x, y) {
				return true
			}
		}
		return false
	}
	top := 0
	for top < h && !rowDiffers(top) {
		top++
	}
	if top == h {
		return g.Rect
	}
	bottom := h
	for !rowDiffers(bottom - 1) {
		bottom--
	}
	left := 0
	for !colDiffers(left, top, bottom) {
		left++
	}
	right := w
	for !colDiffers(right-1, top, bottom) {
		right--
	}
	return image.Rect(left, top, right, bottom)
}

// gaussian3 is the normalised 3-tap Gaussian with σ = 1: radius 1.
var gaussian3 = func() [3]float64 {
	e := math.Exp(-0.5)
	s := 1 + 2*e
	return [3]float64{e / s, 1 / s, e / s}
}()

// unsharp sharpens g with an unsharp mask (Gaussian radius 1, σ 1, amount
// 1), replicating edge pixels, and returns the result unclamped in row-major
// order so that rounding happens once, at the end of the pipeline.
func unsharp(g *image.Gray) []float64 {
	w, h := g.Rect.Dx(), g.Rect.Dy()
	at := func(x, y int) float64 {
		x = min(max(x, 0), w-1)
		y = min(max(y, 0), h-1)
		return float64(g.Pix[y*g.Stride+x])
	}
	// Separable blur: horizontal pass, then vertical.
	tmp := make([]float64, w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			tmp[y*w+x] = gaussian3[0]*at(x-1, y) + gaussian3[1]*at(x, y) + gaussian3[2]*at(x+1, y)
		}
	}
	out := make([]float64, w*h)
	for y := 0; y < h; y++ {
		up, down := max(y-1, 0), min(y+1, h-1)
		for x := 0; x < w; x++ {
			blur := gaussian3[0]*tmp[up*w+x] + gaussian3[1]*tmp[y*w+x] + gaussian3[2]*tmp[down*w+x]
			v := at(x, y)
			out[y*w+x] = min(max(v+(v-blur), 0), 255)
		}
	}
	return out
}
