package chart

import (
	"image/color"
	"math"
)

// blues is ColorBrewer's sequential "Blues" scheme (as used by matplotlib
// and seaborn's cmap="Blues"), from lightest to darkest.
var blues = [...]color.RGBA{
	{0xf7, 0xfb, 0xff, 0xff},
	{0xde, 0xeb, 0xf7, 0xff},
	{0xc6, 0xdb, 0xef, 0xff},
	{0x9e, 0xca, 0xe1, 0xff},
	{0x6b, 0xae, 0xd6, 0xff},
	{0x42, 0x92, 0xc6, 0xff},
	{0x21, 0x71, 0xb5, 0xff},
	{0x08, 0x51, 0x9c, 0xff},
	{0x08, 0x30, 0x6b, 0xff},
}

// bluesAt returns the colour at position t ∈ [0, 1] of the Blues scale,
// interpolating linearly between its anchor colours. t outside the range is
// clamped and NaN maps to the lightest colour.
func bluesAt(t float64) color.RGBA {
	if !(t > 0) {
		return blues[0]
	}
	if t >= 1 {
		return blues[len(blues)-1]
	}
	x := t * float64(len(blues)-1)
	i := int(x)
	f := x - float64(i)
	a, b := blues[i], blues[i+1]
	mix := func(p, q uint8) uint8 { return uint8(math.Round(float64(p) + f*(float64(q)-float64(p)))) }
	return color.RGBA{mix(a.R, b.R), mix(a.G, b.G), mix(a.B, b.B), 0xff}
}

// isDark reports whether text on c should be white rather than dark, using
// the WCAG relative luminance so that the choice matches what the eye sees
// rather than a single channel.
func isDark(c color.RGBA) bool {
	lin := func(v uint8) float64 {
		s := float64(v) / 255
		if s <= 0.04045 {
			return s / 12.92
		}
		return math.Pow((s+0.055)/1.055, 2.4)
	}
	l := 0.2126*lin(c.R) + 0.7152*lin(c.G) + 0.0722*lin(c.B)
	// seaborn's heatmap annotation threshold, so cells get the same text
	// colour as in the report's figure.
	return l <= 0.408
}
