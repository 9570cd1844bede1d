package imageprep

import (
	"bytes"
	"errors"
	"fmt"
	"image"
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
// Decode accepts when the caller passes no cap of its own. 40 MP covers the
// photos of current phone cameras while keeping the decoded image under
// ~160 MB even for 4-byte-per-pixel formats.
const DefaultMaxPixels = 40_000_000

// Errors returned (wrapped) by Sniff, Decode and Prepare. Callers test them
// with errors.Is to choose a status: ErrUnsupported is a wrong media type
// (HTTP 415), ErrTooLarge an image over the pixel cap (413 or 400), and
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
// from the magic bytes, reads only the header to learn the dimensions, and
// refuses an image with no pixels or with more than maxPixels pixels
// (DefaultMaxPixels when maxPixels <= 0) before the decoder allocates the
// pixel buffer, so a small file that claims to be huge (a decompression bomb)
// costs almost nothing. A panic inside a decoder is recovered into an error.
//
// Errors wrap ErrUnsupported (not a supported format), ErrTooLarge (over the
// pixel cap) or ErrCorrupt (anything else wrong with the data). It returns
// the image and its format name as Sniff reports it.
func Decode(data []byte, maxPixels int) (img image.Image, format string, err error) {
	if maxPixels <= 0 {
		maxPixels = DefaultMaxPixels
	}
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
	// A progressive JPEG decoder keeps every DCT coefficient as an int32
	// until the last scan: 4 bytes per pixel per component on top of the
	// image, so a few-kilobyte file could claim ~600 MB at the full cap.
	// Such files get a quarter of the cap to keep the memory per request
	// near that of other formats.
	limit := maxPixels
	if format == "jpeg" && jpegProgressive(data) {
		limit = max(maxPixels/4, 1)
	}
	// Compare without multiplying, so absurd dimensions cannot overflow.
	if w > limit/h {
		kind := format
		if limit != maxPixels {
			kind = "progressive jpeg"
		}
		return nil, format, fmt.Errorf("%w: %s is %d×%d pixels, more than the cap of %d pixels", ErrTooLarge, kind, w, h, limit)
	}

	r := bytes.NewReader(data)
	img, err = guard(format, "data", func() (image.Image, error) {
		return c.decode(r)
	})
	if err != nil {
		return nil, format, err
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		// A decoder must not produce more than the header promised; the
		// pixel cap was judged on the header.
		if int64(b.Dx())*int64(b.Dy()) > int64(maxPixels) {
			return nil, format, fmt.Errorf("%w: %s header says %d×%d but the data decodes to %d×%d", ErrCorrupt, format, w, h, b.Dx(), b.Dy())
		}
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

// jpegProgressive reports whether a JPEG's frame header is progressive
// (SOF2, or SOF6/SOF10/SOF14 which the decoder rejects anyway). It walks the
// marker segments up to the first frame or scan header and reports false for
// anything it cannot follow, leaving errors to the decoder.
func jpegProgressive(data []byte) bool {
	i := 2 // after SOI
	for i+4 <= len(data) {
		if data[i] != 0xff {
			return false
		}
		m := data[i+1]
		switch {
		case m == 0xff: // fill byte
			i++
			continue
		case m == 0xc2 || m == 0xc6 || m == 0xca || m == 0xce:
			return true
		case m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc, m == 0xda:
			return false // another frame type, or the scan data begins
		case m == 0x01 || (m >= 0xd0 && m <= 0xd8): // segments without a length
			i += 2
			continue
		}
		i += 2 + (int(data[i+2])<<8 | int(data[i+3]))
	}
	return false
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
