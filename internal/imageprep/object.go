package imageprep

import (
	"image"
	"image/color"
	"math"
	"slices"

	"golang.org/x/image/draw"
)

// objectSide is the longest side of the reduced colour copy on which the
// object is looked for: enough to outline a garment, small enough that the
// search costs well under a millisecond's worth of pixels per image.
const objectSide = 160

// objectBytes bounds what FindObject and objectInput allocate: about 128
// bytes per pixel of the reduced copy (colour, background, luma, edges,
// masks, component lists), independent of the input's size.
const objectBytes = 128 * objectSide * objectSide

// Object-mask parameters. Distances are in 8-bit units on the reduced,
// area-averaged copy; sigma is the background's own noise measured on the
// border after the background fit.
const (
	borderFrac  = 0.05 // width of the border band the background is fitted on, as a share of the longest side
	noiseK      = 4.0  // a pixel differs from the background by more than noiseK·sigma…
	minLumaDiff = 14.0 // …and by at least this much in luma,
	minChroma   = 10.0 // or this much in chroma (colour distance with brightness removed),
	shadowRatio = 0.5  // or is darker than this share of the background (a shadow keeps more light than that)
	softShadow  = 0.6  // a smooth colourless darkening keeping at least this share of the light is a shadow, never object
	minEdge     = 24.0 // Sobel magnitude that marks an outline (white-on-white items have outlines)
	minObject   = 0.004
	keepPart    = 0.15 // a second part (the other shoe) is kept if at least this share of the largest
	minSolid    = 0.3  // …and covers at least this share of its bounding box
	objectFloor = 48.0 // lowest output level inside the object, so a white item on white stays visible
)

// Object is what FindObject found in an image.
type Object struct {
	Rect image.Rectangle // the object's bounding box in the image's coordinates
	// mask marks object pixels on the reduced copy (1 inside), whose
	// pixel (0,0) is the image's Rect.Min and which is scale times smaller.
	mask         []float64
	luma, bgLuma []float64 // the reduced copy's luma and the fitted background's
	mw, mh       int
	box          image.Rectangle // Rect on the reduced copy
	lightGround  bool            // the background is lighter than mid-gray
}

// FindObject looks for the object in a photo: it estimates the background
// everywhere from the image's border band (borderBackground: gradients,
// vignetting and shadows along the border carry into the interior, short
// stretches of object on the border are ignored), measures the border's
// noise (JPEG artefacts, texture), and marks as object every pixel that
// differs from the fitted background in colour, is brighter than it, is much
// darker than a shadow would make it, or lies on a sharp outline. The marks
// are closed, their holes filled, and the largest connected part (with any
// part at least keepPart its size) is the object. ok is false when nothing
// stands out (a blank or uniform image).
func FindObject(img image.Image) (obj Object, ok bool) {
	b := img.Bounds()
	if b.Empty() {
		return Object{}, false
	}
	w, h := b.Dx(), b.Dy()
	mw, mh := w, h
	if m := max(w, h); m > objectSide {
		mw = max(1, int(math.Round(float64(w)*objectSide/float64(m))))
		mh = max(1, int(math.Round(float64(h)*objectSide/float64(m))))
	}
	if mw < 8 || mh < 8 {
		return Object{}, false
	}
	n := mw * mh
	rgb := reduceRGB(img, mw, mh)

	bg, sigma := borderBackground(rgb, mw, mh)
	luma := func(c [3]float64) float64 { return 0.299*c[0] + 0.587*c[1] + 0.114*c[2] }
	lum := make([]float64, n)
	bgl := make([]float64, n)
	fg := make([]bool, n)
	weak := make([]bool, n)
	tl := max(noiseK*sigma, minLumaDiff)
	tc := max(noiseK*sigma, minChroma)
	for i := range rgb {
		lum[i], bgl[i] = luma(rgb[i]), luma(bg[i])
	}
	edge := make([]float64, n)
	for y := 1; y < mh-1; y++ {
		for x := 1; x < mw-1; x++ {
			at := func(dx, dy int) float64 { return lum[(y+dy)*mw+x+dx] }
			gx := at(1, -1) + 2*at(1, 0) + at(1, 1) - at(-1, -1) - 2*at(-1, 0) - at(-1, 1)
			gy := at(-1, 1) + 2*at(0, 1) + at(1, 1) - at(-1, -1) - 2*at(0, -1) - at(1, -1)
			edge[y*mw+x] = math.Hypot(gx, gy) / 4
		}
	}
	te := max(2*noiseK*sigma, minEdge)
	for i := range rgb {
		l, lb := lum[i], bgl[i]
		dl := l - lb
		// Chroma: the colour difference once each colour is scaled to the
		// background's brightness, so a shadow (a darker copy of the same
		// colour) has none.
		var dc float64
		if l > 24 && lb > 24 {
			s := lb / l
			for c := range 3 {
				d := rgb[i][c]*s - bg[i][c]
				dc += d * d
			}
			dc = math.Sqrt(dc)
		}
		fg[i] = dc > tc || dl > tl || (dl < -tl && l < shadowRatio*lb) || edge[i] > te
		// A smooth, colourless darkening that keeps most of the light is
		// what a shadow looks like: it must not join the object.
		shadowy := dl < 0 && l >= softShadow*lb && dc <= tc && edge[i] < te/2
		weak[i] = math.Abs(dl) > tl && !shadowy
	}
	fg = despeckle(fg, weak, mw, mh)
	fg = grow(fg, weak, mw, mh)
	fg = dilate(fg, mw, mh, 2)
	fg = fillHoles(fg, mw, mh)
	fg = erode(fg, mw, mh, 2)

	comps := components(fg, mw, mh)
	if len(comps) == 0 {
		return Object{}, false
	}
	largest := 0
	for _, c := range comps {
		largest = max(largest, c.area)
	}
	if float64(largest) < minObject*float64(n) {
		return Object{}, false
	}
	mask := make([]float64, n)
	box := image.Rectangle{}
	for _, c := range comps {
		// Further parts must be sizeable and solid: long thin lines (tile
		// joints, floorboards, a table edge) are background texture.
		if c.area < largest && (float64(c.area) < keepPart*float64(largest) || float64(c.area) < minSolid*float64(c.box.Dx()*c.box.Dy())) {
			continue
		}
		box = box.Union(c.box)
		for _, i := range c.pix {
			mask[i] = 1
		}
	}
	sx, sy := float64(w)/float64(mw), float64(h)/float64(mh)
	r := image.Rect(
		int(math.Floor(float64(box.Min.X)*sx)), int(math.Floor(float64(box.Min.Y)*sy)),
		int(math.Ceil(float64(box.Max.X)*sx)), int(math.Ceil(float64(box.Max.Y)*sy)),
	).Add(b.Min).Intersect(b)
	return Object{Rect: r, mask: mask, luma: lum, bgLuma: bgl, mw: mw, mh: mh, box: box}, true
}

// reduceRGB returns a mw×mh colour copy of img, each pixel the mean of up
// to 4×4 samples spread over its footprint, transparent pixels composited
// onto white (as toGray does). It reads pixels through RGBA64At where the
// image offers it, so it allocates nothing per pixel.
func reduceRGB(img image.Image, mw, mh int) [][3]float64 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	sx, sy := min(4, max(1, w/mw)), min(4, max(1, h/mh))
	fast, _ := img.(image.RGBA64Image)
	out := make([][3]float64, mw*mh)
	for y := range mh {
		for x := range mw {
			var r, g, bl float64
			for j := range sy {
				py := b.Min.Y + ((2*y*sy+2*j+1)*h)/(2*mh*sy)
				for i := range sx {
					px := b.Min.X + ((2*x*sx+2*i+1)*w)/(2*mw*sx)
					var c color.RGBA64
					if fast != nil {
						c = fast.RGBA64At(px, py)
					} else {
						cr, cg, cb, ca := img.At(px, py).RGBA()
						c = color.RGBA64{uint16(cr), uint16(cg), uint16(cb), uint16(ca)}
					}
					white := float64(0xffff - uint32(c.A))
					r += float64(c.R) + white
					g += float64(c.G) + white
					bl += float64(c.B) + white
				}
			}
			k := 257 * float64(sx*sy)
			out[y*mw+x] = [3]float64{r / k, g / k, bl / k}
		}
	}
	return out
}

// borderBackground estimates the background at every pixel of the w×h
// image rgb from its border band: each side's colour profile is the median
// across the band's depth, smoothed along the side by a running median
// (so an object touching the border over less than a sixteenth of a side
// does not move it), and the interior is the Coons patch of the four
// profiles, which reproduces any gradient, vignetting or shadow present
// along the border. It also returns the band's noise: 1.4826 times the
// median distance of band pixels from the estimate (JPEG artefacts,
// texture).
func borderBackground(rgb [][3]float64, w, h int) ([][3]float64, float64) {
	bw := max(1, int(math.Round(borderFrac*float64(max(w, h)))))
	bw = min(bw, w/2, h/2)
	// profile returns the smoothed colour along one side: at(p, d) is the
	// pixel at position p along the side and depth d into the image.
	profile := func(length int, at func(p, d int) int) [][3]float64 {
		raw := make([][3]float64, length)
		col := make([]float64, bw)
		for p := range length {
			for ch := range 3 {
				for d := range bw {
					col[d] = rgb[at(p, d)][ch]
				}
				raw[p][ch] = median(col)
			}
		}
		half := max(1, length/16)
		out := make([][3]float64, length)
		win := make([]float64, 0, 2*half+1)
		for p := range length {
			for ch := range 3 {
				win = win[:0]
				for q := max(0, p-half); q <= min(length-1, p+half); q++ {
					win = append(win, raw[q][ch])
				}
				out[p][ch] = median(win)
			}
		}
		return out
	}
	top := profile(w, func(p, d int) int { return d*w + p })
	bottom := profile(w, func(p, d int) int { return (h-1-d)*w + p })
	left := profile(h, func(p, d int) int { return p*w + d })
	right := profile(h, func(p, d int) int { return p*w + w - 1 - d })
	out := make([][3]float64, w*h)
	for y := range h {
		v := float64(y) / float64(max(h-1, 1))
		for x := range w {
			u := float64(x) / float64(max(w-1, 1))
			for ch := range 3 {
				c := (1-v)*top[x][ch] + v*bottom[x][ch] + (1-u)*left[y][ch] + u*right[y][ch] -
					((1-u)*(1-v)*top[0][ch] + u*(1-v)*top[w-1][ch] + (1-u)*v*bottom[0][ch] + u*v*bottom[w-1][ch])
				out[y*w+x][ch] = min(max(c, 0), 255)
			}
		}
	}
	var res []float64
	for y := range h {
		for x := range w {
			if x < bw || y < bw || x >= w-bw || y >= h-bw {
				i := y*w + x
				var d float64
				for ch := range 3 {
					e := rgb[i][ch] - out[i][ch]
					d += e * e
				}
				res = append(res, math.Sqrt(d/3))
			}
		}
	}
	return out, 1.4826 * median(res)
}

// median returns the median of v, reordering v.
func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

// dilate sets every pixel within a (2r+1)² square of a set pixel.
func dilate(m []bool, w, h, r int) []bool { return morph(m, w, h, r, true) }

// erode keeps only pixels whose whole (2r+1)² square is set; outside the
// image counts as set, so objects touching the border keep their extent.
func erode(m []bool, w, h, r int) []bool { return morph(m, w, h, r, false) }

func morph(m []bool, w, h, r int, grow bool) []bool {
	// Separable: rows, then columns.
	tmp := make([]bool, len(m))
	for y := range h {
		for x := range w {
			v := !grow
			for dx := -r; dx <= r; dx++ {
				xx := x + dx
				if xx < 0 || xx >= w {
					continue
				}
				if grow {
					v = v || m[y*w+xx]
				} else {
					v = v && m[y*w+xx]
				}
			}
			tmp[y*w+x] = v
		}
	}
	out := make([]bool, len(m))
	for y := range h {
		for x := range w {
			v := !grow
			for dy := -r; dy <= r; dy++ {
				yy := y + dy
				if yy < 0 || yy >= h {
					continue
				}
				if grow {
					v = v || tmp[yy*w+x]
				} else {
					v = v && tmp[yy*w+x]
				}
			}
			out[y*w+x] = v
		}
	}
	return out
}

// despeckle drops strong pixels with fewer than two strong or weak
// neighbours (of eight): lone noise pixels, such as JPEG ringing, must not
// seed an object.
func despeckle(strong, weak []bool, w, h int) []bool {
	out := make([]bool, len(strong))
	for i, s := range strong {
		if !s {
			continue
		}
		x, y, k := i%w, i/w, 0
		for dy := -1; dy <= 1; dy++ {
			for dx := -1; dx <= 1; dx++ {
				xx, yy := x+dx, y+dy
				if (dx != 0 || dy != 0) && xx >= 0 && yy >= 0 && xx < w && yy < h && (strong[yy*w+xx] || weak[yy*w+xx]) {
					k++
				}
			}
		}
		out[i] = k >= 2
	}
	return out
}

// grow returns strong plus every weak pixel 8-connected to a strong one
// through weak pixels: hysteresis, as in Canny's edge detector, so the faint
// parts of an object join it while a faint shadow or stain elsewhere does
// not.
func grow(strong, weak []bool, w, h int) []bool {
	out := slices.Clone(strong)
	var stack []int
	for i, s := range strong {
		if s {
			stack = append(stack, i)
		}
	}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		x, y := i%w, i/w
		for dy := -1; dy <= 1; dy++ {
			for dx := -1; dx <= 1; dx++ {
				xx, yy := x+dx, y+dy
				if xx < 0 || yy < 0 || xx >= w || yy >= h {
					continue
				}
				if j := yy*w + xx; weak[j] && !out[j] {
					out[j] = true
					stack = append(stack, j)
				}
			}
		}
	}
	return out
}

// fillHoles sets every unset pixel not 4-connected to the image border.
func fillHoles(m []bool, w, h int) []bool {
	outside := make([]bool, len(m))
	var stack []int
	push := func(i int) {
		if !m[i] && !outside[i] {
			outside[i] = true
			stack = append(stack, i)
		}
	}
	for x := range w {
		push(x)
		push((h-1)*w + x)
	}
	for y := range h {
		push(y * w)
		push(y*w + w - 1)
	}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		x, y := i%w, i/w
		if x > 0 {
			push(i - 1)
		}
		if x < w-1 {
			push(i + 1)
		}
		if y > 0 {
			push(i - w)
		}
		if y < h-1 {
			push(i + w)
		}
	}
	out := make([]bool, len(m))
	for i := range m {
		out[i] = !outside[i]
	}
	return out
}

type component struct {
	area int
	box  image.Rectangle
	pix  []int
}

// components returns the 8-connected parts of m.
func components(m []bool, w, h int) []component {
	seen := make([]bool, len(m))
	var out []component
	for s := range m {
		if !m[s] || seen[s] {
			continue
		}
		c := component{box: image.Rect(s%w, s/w, s%w+1, s/w+1)}
		stack := []int{s}
		seen[s] = true
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			c.pix = append(c.pix, i)
			x, y := i%w, i/w
			c.box = c.box.Union(image.Rect(x, y, x+1, y+1))
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					xx, yy := x+dx, y+dy
					if xx < 0 || yy < 0 || xx >= w || yy >= h {
						continue
					}
					j := yy*w + xx
					if m[j] && !seen[j] {
						seen[j] = true
						stack = append(stack, j)
					}
				}
			}
		}
		c.area = len(c.pix)
		out = append(out, c)
	}
	return out
}

// objectInput is the conversion for photos: find the object (FindObject),
// take each pixel's difference from the fitted background — darkness below
// it on a light background (the dataset's negation), brightness above it on
// a dark one — as its intensity, at least objectFloor inside the object so a
// white item on white keeps its silhouette, and 0 wherever the mask says
// background, so no gradient or shadow survives as a gray band. The object's
// box is resized so its longest side is Side, sharpened and centred on
// black. Without an object it falls back to the plain dataset conversion of
// the gray image g.
func objectInput(img image.Image, g *image.Gray) *image.Gray {
	obj, ok := FindObject(img)
	if !ok {
		return convert(g)
	}
	vimg := image.NewGray(image.Rect(0, 0, obj.mw, obj.mh))
	for i, m := range obj.mask {
		if m == 0 {
			continue
		}
		// The distance from the background in luma, as a share of the room
		// there is on that side of it: a dark item on a light ground and a
		// light item on a dark one both come out bright, as in the dataset.
		l, lb := obj.luma[i], obj.bgLuma[i]
		v := (lb - l) * 255 / max(lb, 1)
		if l > lb {
			v = (l - lb) * 255 / max(255-lb, 1)
		}
		vimg.Pix[i] = uint8(math.Round(min(max(v, objectFloor), 255)))
	}
	box := obj.box
	cw, ch := box.Dx(), box.Dy()
	tw, th := fitSide(cw, ch)
	small := image.NewGray(image.Rect(0, 0, tw, th))
	draw.BiLinear.Scale(small, small.Rect, vimg, box, draw.Src, nil)
	sharp := unsharp(small)
	out := image.NewGray(image.Rect(0, 0, Side, Side))
	x0, y0 := (Side-tw)/2, (Side-th)/2
	for y := range th {
		for x := range tw {
			out.Pix[(y0+y)*out.Stride+x0+x] = uint8(math.Round(sharp[y*tw+x]))
		}
	}
	return out
}

// fitSide returns the size of a w×h image scaled so its longest side is
// Side, keeping the aspect ratio (each side at least 1).
func fitSide(w, h int) (tw, th int) {
	if w >= h {
		return Side, max(1, int(math.Round(float64(h)*Side/float64(w))))
	}
	return max(1, int(math.Round(float64(w)*Side/float64(h)))), Side
}
