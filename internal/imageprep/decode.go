package imageprep

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/bmp"
	"golang.org/x/image/webp"
)

// Side is the width and height, in pixels, of the images the model sees.
const Side = 28

// DefaultMaxPixels is the largest image, in pixels (width × height), that
// Decode accepts when Limits.MaxPixels is zero. 40 MP covers the photos of
// current phone cameras.
const DefaultMaxPixels = 40_000_000

// DefaultMaxBytes is the decoder memory budget when Limits.MaxBytes is zero:
// 64 MiB, which admits a 40 MP gray PNG, a 40 MP baseline JPEG photo with
// 4:2:0 chroma, a 12 MP RGBA PNG or an 8 MP 16-bit RGBA PNG, and refuses a
// 40 MP RGBA PNG (160 MB) or 16-bit RGBA PNG (320 MB).
const DefaultMaxBytes = 64 << 20

// MaxAspect is the most the long edge of an image may exceed its short edge
// by, as a factor. Resized to the model's 28 pixels, an image up to 28
// times longer than wide is still at least one pixel thick; anything
// thinner (a 40,000,000×1 line) cannot become a useful input and is
// refused from its header.
const MaxAspect = Side

// Limits bound what Decode and Prepare accept; they are checked from the
// header alone, before any pixel buffer exists. The zero value means the
// defaults.
type Limits struct {
	// MaxPixels caps width × height; 0 means DefaultMaxPixels.
	MaxPixels int
	// MaxBytes caps the memory the decoder needs for the image, estimated
	// from the header per format: bytes per pixel of the decoded image
	// type (1 for 8-bit gray or paletted, 1.5 for a 4:2:0 JPEG, 4 for
	// RGBA, 8 for 16-bit RGBA) plus the decoder's own buffers (a
	// progressive JPEG's coefficients, an interlaced PNG's passes, a
	// lossless WebP's ARGB planes). 0 means DefaultMaxBytes.
	MaxBytes int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	return l
}

// PeakBytes is the most heap memory Prepare allocates for one image it
// accepts under l, not counting the encoded bytes themselves: the decoder's
// budget (MaxBytes) plus the pipeline's working image (at most workBytes,
// about 4 MiB, whatever the input's size) — 68 MiB at the defaults. A
// server holding n images in preparation at once needs n × PeakBytes.
func (l Limits) PeakBytes() int64 {
	return l.withDefaults().MaxBytes + workBytes
}

// Errors returned (wrapped) by Sniff, Decode and Prepare. Callers test them
// with errors.Is to choose a status: ErrUnsupported is a wrong media type
// (HTTP 415), ErrTooLarge an image over a limit of Limits or MaxAspect (413
// or 400), and
// ErrCorrupt malformed data of a supported format (400).
var (
	ErrUnsupported = errors.New("unsupported image format")
	ErrTooLarge    = errors.New("image too large")
	ErrCorrupt     = errors.New("corrupt image")
)

// Formats returns the names of the supported formats, as Sniff reports
// them, for help texts and API documentation.
func Formats() []string { return []string{"png", "jpeg", "gif", "webp", "bmp"} }

// ContentType returns the MIME type of a format name returned by Sniff, or ""
// for a name it does not know.
func ContentType(format string) string {
	switch format {
	case "png", "jpeg", "gif", "webp", "bmp":
		return "image/" + format
	}
	return ""
}

// bmpInfoHeaderLens are the BMP info header sizes golang.org/x/image/bmp
// decodes (BITMAPINFOHEADER, V4 and V5). Checking it makes the two-byte "BM"
// signature far less likely to match text that happens to start with it.
var bmpInfoHeaderLens = map[uint32]bool{40: true, 108: true, 124: true}

// Sniff reports the format of an encoded image from its leading magic bytes,
// never from a file name or a declared Content-Type, which a client controls.
// It returns an error wrapping ErrUnsupported when the bytes start like none
// of the supported formats.
func Sniff(data []byte) (format string, err error) {
	switch {
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return "png", nil
	case bytes.HasPrefix(data, []byte{0xff, 0xd8, 0xff}):
		return "jpeg", nil
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return "gif", nil
	case len(data) >= 12 && bytes.Equal(data[:4], []byte("RIFF")) && bytes.Equal(data[8:12], []byte("WEBP")):
		return "webp", nil
	case len(data) >= 18 && bytes.Equal(data[:2], []byte("BM")) &&
		bmpInfoHeaderLens[uint32(data[14])|uint32(data[15])<<8|uint32(data[16])<<16|uint32(data[17])<<24]:
		return "bmp", nil
	}
	return "", fmt.Errorf("%w: the first bytes (%q) match none of PNG, JPEG, GIF, WebP or BMP", ErrUnsupported, head(data, 8))
}

// head returns at most n leading bytes of b, for error messages.
func head(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// codec pairs the header-only and full decoders of one format.
type codec struct {
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
}

// codecs are called directly rather than through image.Decode so that the
// decoder used is always the one Sniff chose, whatever other packages
// register with the image package.
var codecs = map[string]codec{
	"png":  {png.DecodeConfig, png.Decode},
	"jpeg": {jpeg.DecodeConfig, jpeg.Decode},
	"gif":  {gif.DecodeConfig, gif.Decode},
	"webp": {webp.DecodeConfig, webp.Decode},
	"bmp":  {bmp.DecodeConfig, bmp.Decode},
}

// Decode decodes an encoded image without trusting it. It sniffs the format
// from the magic bytes and reads only the header to learn the dimensions;
// an image with no pixels, more than lim.MaxPixels pixels, a long edge more
// than MaxAspect times its short edge, or a decoder memory estimate over
// lim.MaxBytes is refused before the decoder allocates the pixel buffer, so
// a small file that claims to be huge (a decompression bomb) costs almost
// nothing. A panic inside a decoder is recovered into an error.
//
// Errors wrap ErrUnsupported (not a supported format), ErrTooLarge (over a
// limit) or ErrCorrupt (anything else wrong with the data). It returns the
// image and its format name as Sniff reports it.
func Decode(data []byte, lim Limits) (img image.Image, format string, err error) {
	lim = lim.withDefaults()
	format, err = Sniff(data)
	if err != nil {
		return nil, "", err
	}
	c := codecs[format]

	cfg, err := guard(format, "header", func() (image.Config, error) {
		return c.config(bytes.NewReader(data))
	})
	if err != nil {
		return nil, format, err
	}
	w, h := cfg.Width, cfg.Height
	if w <= 0 || h <= 0 {
		return nil, format, fmt.Errorf("%w: %s header says %d×%d pixels; an image needs at least one", ErrCorrupt, format, w, h)
	}
	// Compare without multiplying, so absurd dimensions cannot overflow.
	if w > lim.MaxPixels/h {
		return nil, format, fmt.Errorf("%w: %s is %d×%d pixels, more than the cap of %d pixels", ErrTooLarge, format, w, h, lim.MaxPixels)
	}
	if long, short := max(w, h), min(w, h); long/MaxAspect > short || (long%MaxAspect != 0 && long/MaxAspect == short) {
		return nil, format, fmt.Errorf("%w: %s is %d×%d pixels, longer than %d times its width; resized to %d pixels it would be thinner than one", ErrTooLarge, format, w, h, MaxAspect, Side)
	}
	if need := decodeBytes(format, cfg, data); need > lim.MaxBytes {
		return nil, format, fmt.Errorf("%w: decoding this %d×%d %s needs about %d MiB, more than the budget of %d MiB", ErrTooLarge, w, h, describeFormat(format, data), (need+1<<20-1)>>20, lim.MaxBytes>>20)
	}

	r := bytes.NewReader(data)
	img, err = guard(format, "data", func() (image.Image, error) {
		return c.decode(r)
	})
	if err != nil {
		return nil, format, err
	}
	if b := img.Bounds(); b.Dx() > w || b.Dy() > h {
		// A decoder must not produce more than the header promised; the
		// limits were judged on the header.
		return nil, format, fmt.Errorf("%w: %s header says %d×%d but the data decodes to %d×%d", ErrCorrupt, format, w, h, b.Dx(), b.Dy())
	}
	if b := img.Bounds(); b.Empty() {
		return nil, format, fmt.Errorf("%w: %s decodes to an empty image", ErrCorrupt, format)
	}
	// PNG's last chunk is IEND and the decoder stops right after it, so
	// bytes left over are a second file glued on (a PNG/ZIP or PNG/HTML
	// polyglot). JPEG and GIF decoders read ahead, and cameras append data
	// after a JPEG's end marker, so only PNG is checked.
	if format == "png" && r.Len() > 0 {
		return nil, format, fmt.Errorf("%w: png has %d bytes after its IEND chunk (a polyglot or a truncated upload of several files?)", ErrCorrupt, r.Len())
	}
	return img, format, nil
}

// decoderOverhead is what every decode allocates besides the image buffers
// decodeBytes counts: Huffman and LZW tables, zlib windows, bufio readers.
const decoderOverhead = 256 << 10

// decodeBytes estimates from the header, without decoding, how many bytes of
// heap the format's decoder allocates for data: the decoded image and every
// other buffer proportional to the image size. It errs high (tests check it
// against measured allocations for every image type the decoders produce).
func decodeBytes(format string, cfg image.Config, data []byte) int64 {
	w, h := int64(cfg.Width), int64(cfg.Height)
	px := w * h
	n := int64(decoderOverhead)
	switch format {
	case "png":
		return n + pngBytes(data, w, h)
	case "jpeg":
		return n + jpegBytes(data, w, h)
	case "gif":
		// *image.Paletted, the size of the logical screen at most, and
		// for an interlaced frame a second one to put its rows in order.
		return n + 2*px
	case "webp":
		switch cfg.ColorModel {
		case color.YCbCrModel: // lossy: 4:2:0 YCbCr of whole 16×16 macroblocks
			return n + ((w+15)/16*16)*((h+15)/16*16)*3/2
		case color.NYCbCrAModel: // lossy with alpha, which may be coded losslessly (below)
			return n + ((w+15)/16*16)*((h+15)/16*16)*3/2 + 10*px
		}
		// Lossless: ARGB pixels, a second full plane for the
		// colour-indexing transform, then the NRGBA image sharing one.
		return n + 8*px
	case "bmp":
		if _, ok := cfg.ColorModel.(color.Palette); ok {
			return n + px + 4*w
		}
		return n + 4*px + 4*w // *image.RGBA (or NRGBA), plus a row buffer
	}
	return n + 8*px
}

// pngBytes is decodeBytes for a PNG: the decoded image type follows from
// the colour type and bit depth of the IHDR chunk and whether a tRNS chunk
// comes before the image data (gray with tRNS decodes to NRGBA); interlaced
// images are decoded pass by pass into images that together are as large
// as the final one.
func pngBytes(data []byte, w, h int64) int64 {
	const worst = 8 // bytes per pixel of *image.NRGBA64
	if len(data) < 33 {
		return worst * w * h
	}
	depth, colorType, interlaced := int64(data[24]), data[25], data[28] != 0
	trns := false
	for i := 8; i+8 <= len(data); {
		n := int64(uint32(data[i])<<24 | uint32(data[i+1])<<16 | uint32(data[i+2])<<8 | uint32(data[i+3]))
		typ := string(data[i+4 : i+8])
		if typ == "IDAT" || typ == "IEND" {
			break
		}
		if typ == "tRNS" {
			trns = true
		}
		if n > int64(len(data)) {
			break
		}
		i += 12 + int(n)
	}
	channels := map[byte]int64{0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colorType]
	bpp := int64(worst)
	switch {
	case colorType == 3:
		bpp = 1 // *image.Paletted
	case colorType == 0 && depth <= 8 && !trns:
		bpp = 1 // *image.Gray
	case colorType == 0 && depth == 16 && !trns:
		bpp = 2 // *image.Gray16
	case depth <= 8:
		bpp = 4 // *image.RGBA or *image.NRGBA
	}
	rows := 2 * (1 + (max(channels, 1)*depth*w+7)/8) // the current and previous row
	n := bpp*w*h + rows
	if interlaced {
		n *= 2
	}
	return n
}

// jpegFrame is what jpegBytes needs from a JPEG's headers.
type jpegFrame struct {
	progressive bool
	rgb         bool // maybe an RGB (not YCbCr) JPEG, which decodes to *image.RGBA
	h, v        []int64
	ids         []byte
}

// parseJPEG walks the marker segments up to the first frame header and
// reports its components, sampling factors and coding process; ok is false
// for anything it cannot follow, leaving errors to the decoder.
func parseJPEG(data []byte) (f jpegFrame, ok bool) {
	i := 2 // after SOI
	for i+4 <= len(data) {
		if data[i] != 0xff {
			return f, false
		}
		m := data[i+1]
		switch {
		case m == 0xff: // fill byte
			i++
			continue
		case m == 0x01 || (m >= 0xd0 && m <= 0xd8): // segments without a length
			i += 2
			continue
		case m == 0xda: // the scan begins before any frame header
			return f, false
		}
		end := i + 2 + (int(data[i+2])<<8 | int(data[i+3]))
		if end < i+4 {
			return f, false
		}
		seg := data[i+4 : min(len(data), end)]
		switch {
		case m == 0xee && len(seg) >= 12 && string(seg[:5]) == "Adobe":
			f.rgb = f.rgb || seg[11] == 0 // transform 0: RGB or CMYK
		case m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc:
			f.progressive = m == 0xc2 || m == 0xc6 || m == 0xca || m == 0xce
			if len(seg) < 6 {
				return f, false
			}
			nc := int(seg[5])
			if nc < 1 || len(seg) < 6+3*nc {
				return f, false
			}
			for c := range nc {
				hv := seg[6+3*c+1]
				f.ids = append(f.ids, seg[6+3*c])
				f.h, f.v = append(f.h, max(int64(hv>>4), 1)), append(f.v, max(int64(hv&15), 1))
			}
			if nc == 3 && string(f.ids) == "RGB" {
				f.rgb = true
			}
			return f, true
		}
		i = end
	}
	return f, false
}

// jpegBytes is decodeBytes for a JPEG. The decoder allocates each
// component at its sampling resolution, padded to whole MCUs (one
// *image.Gray or *image.YCbCr, plus a black plane for CMYK), converts CMYK
// and RGB JPEGs into a further 4-byte-per-pixel image, and for a
// progressive JPEG keeps every DCT coefficient as an int32 until the last
// scan: 4 bytes per component sample.
func jpegBytes(data []byte, w, h int64) int64 {
	f, ok := parseJPEG(data)
	if !ok {
		return 24 * w * h // four components, no subsampling, progressive
	}
	hmax, vmax := int64(1), int64(1)
	if len(f.h) > 1 {
		for c := range f.h {
			hmax, vmax = max(hmax, f.h[c]), max(vmax, f.v[c])
		}
	}
	mxx, myy := (w+8*hmax-1)/(8*hmax), (h+8*vmax-1)/(8*vmax)
	var samples int64
	for c := range f.h {
		hc, vc := f.h[c], f.v[c]
		if len(f.h) == 1 {
			hc, vc = 1, 1
		}
		samples += 8 * hc * mxx * 8 * vc * myy
	}
	n := samples
	if len(f.h) == 4 || (len(f.h) == 3 && f.rgb) {
		n += 4 * w * h
	}
	if f.progressive {
		n += 4 * samples
	}
	return n
}

// describeFormat names a format for the memory-budget error, with the
// variant that makes it expensive.
func describeFormat(format string, data []byte) string {
	if format == "jpeg" {
		if f, ok := parseJPEG(data); ok && f.progressive {
			return "progressive jpeg"
		}
	}
	return format
}

// guard runs one decoder step, recovers a panic inside it, and classifies
// the error it returns.
func guard[T any](format, step string, f func() (T, error)) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			var zero T
			v, err = zero, fmt.Errorf("%w: %s decoder failed on the %s: %v", ErrCorrupt, format, step, p)
		}
	}()
	v, err = f()
	if err != nil {
		var zero T
		return zero, classify(format, step, err)
	}
	return v, nil
}

// classify wraps a decoder's error in the sentinel that says what to do
// about it. Variants of a format that its decoder does not implement (a BMP
// compression mode, a JPEG coding process) are unsupported, not corrupt.
func classify(format, step string, err error) error {
	var unsupported jpeg.UnsupportedError
	switch {
	case errors.As(err, &unsupported),
		errors.Is(err, bmp.ErrUnsupported):
		return fmt.Errorf("%w: %s variant not supported (%v)", ErrUnsupported, format, err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("%w: %s %s ends early (truncated file?): %v", ErrCorrupt, format, step, err)
	}
	return fmt.Errorf("%w: %s %s: %v", ErrCorrupt, format, step, err)
}
