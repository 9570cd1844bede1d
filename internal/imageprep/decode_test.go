package imageprep

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/image/bmp"
)

// testImage returns a deterministic w×h colour image with some structure,
// so that encoders cannot collapse it to nothing.
func testImage(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x * 255 / max(w-1, 1)), uint8(y * 255 / max(h-1, 1)), uint8((x ^ y) * 7), 255})
		}
	}
	return img
}

// encode returns img encoded in format ("png", "jpeg", "gif" or "bmp").
func encode(t testing.TB, format string, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&buf, img)
	case "jpeg":
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90})
	case "gif":
		err = gif.Encode(&buf, img, nil)
	case "bmp":
		err = bmp.Encode(&buf, img)
	default:
		t.Fatalf("encode: no encoder for %q", format)
	}
	if err != nil {
		t.Fatalf("encoding %s: %v", format, err)
	}
	return buf.Bytes()
}

// readTestdata returns a file under testdata or fails the test.
func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatalf("reading test file: %v", err)
	}
	return b
}

// pngChunk encodes one PNG chunk with its CRC.
func pngChunk(typ string, data []byte) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	b = append(b, typ...)
	b = append(b, data...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(append([]byte(typ), data...)))
}

// pngHeaderOnly returns a well-formed PNG signature and IHDR claiming w×h
// 8-bit grayscale pixels, followed by a tiny IDAT and IEND: a decompression
// bomb's header without the bomb.
func pngHeaderOnly(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 0, 0, 0, 0) // depth 8, gray, deflate, filter 0, no interlace
	b := []byte("\x89PNG\r\n\x1a\n")
	b = append(b, pngChunk("IHDR", ihdr)...)
	// A zlib stream of a few zero bytes; a real bomb would expand to 100 MB.
	b = append(b, pngChunk("IDAT", []byte{0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01})...)
	return append(b, pngChunk("IEND", nil)...)
}

func TestSniff(t *testing.T) {
	img := testImage(8, 6)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"png", encode(t, "png", img), "png"},
		{"jpeg", encode(t, "jpeg", img), "jpeg"},
		{"gif", encode(t, "gif", img), "gif"},
		{"bmp", encode(t, "bmp", img), "bmp"},
		{"webp lossless", readTestdata(t, "tiny-lossless.webp"), "webp"},
		{"webp lossy", readTestdata(t, "tiny-lossy.webp"), "webp"},
		{"empty", nil, ""},
		{"text", []byte("hello, world"), ""},
		{"svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`), ""},
		{"html", []byte("<!doctype html><img src=x>"), ""},
		{"BM text", []byte("BMW is a car maker, not a bitmap"), ""},
		{"RIFF wave", []byte("RIFF\x24\x00\x00\x00WAVEfmt "), ""},
		{"png prefix only", []byte("\x89PNG"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Sniff(tt.data)
			if got != tt.want {
				t.Errorf("Sniff = %q, want %q", got, tt.want)
			}
			if tt.want == "" && !errors.Is(err, ErrUnsupported) {
				t.Errorf("Sniff error = %v, want ErrUnsupported", err)
			}
			if tt.want != "" && err != nil {
				t.Errorf("Sniff error = %v, want nil", err)
			}
		})
	}
}

func TestDecodeFormats(t *testing.T) {
	img := testImage(33, 17)
	tests := []struct {
		name   string
		data   []byte
		format string
		w, h   int
	}{
		{"png", encode(t, "png", img), "png", 33, 17},
		{"jpeg", encode(t, "jpeg", img), "jpeg", 33, 17},
		{"gif", encode(t, "gif", img), "gif", 33, 17},
		{"bmp", encode(t, "bmp", img), "bmp", 33, 17},
		{"webp lossless", readTestdata(t, "tiny-lossless.webp"), "webp", 0, 0},
		{"webp lossy", readTestdata(t, "tiny-lossy.webp"), "webp", 150, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, format, err := Decode(tt.data, Limits{})
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if format != tt.format {
				t.Errorf("format = %q, want %q", format, tt.format)
			}
			b := got.Bounds()
			if b.Empty() {
				t.Fatalf("decoded image is empty")
			}
			if tt.w != 0 && (b.Dx() != tt.w || b.Dy() != tt.h) {
				t.Errorf("size = %d×%d, want %d×%d", b.Dx(), b.Dy(), tt.w, tt.h)
			}
			g, err := Prepare(tt.data, Limits{})
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if g.Rect != image.Rect(0, 0, Side, Side) {
				t.Errorf("Prepare bounds = %v, want 28×28 at origin", g.Rect)
			}
		})
	}
}

// bombs returns small files whose headers claim far more pixels than
// DefaultMaxPixels, one per format.
func bombs(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{"png": pngHeaderOnly(10_000, 10_000)}

	// GIF: logical screen 65535×65535 in bytes 6–9.
	g := encode(t, "gif", testImage(4, 4))
	binary.LittleEndian.PutUint16(g[6:], 65535)
	binary.LittleEndian.PutUint16(g[8:], 65535)
	out["gif"] = g

	// JPEG: height and width of the SOF0 segment.
	j := encode(t, "jpeg", testImage(16, 16))
	sof := bytes.Index(j, []byte{0xff, 0xc0})
	if sof < 0 {
		t.Fatal("no SOF0 marker in the test JPEG")
	}
	binary.BigEndian.PutUint16(j[sof+5:], 65000)
	binary.BigEndian.PutUint16(j[sof+7:], 65000)
	out["jpeg"] = j

	// BMP: width and height of the info header.
	b := encode(t, "bmp", testImage(4, 4))
	binary.LittleEndian.PutUint32(b[18:], 30_000)
	binary.LittleEndian.PutUint32(b[22:], 30_000)
	out["bmp"] = b

	// WebP lossless: 14-bit width-1 and height-1 after the 0x2f signature.
	w := bytes.Clone(readTestdata(t, "tiny-lossless.webp"))
	if w[20] != 0x2f {
		t.Fatal("test WebP is not a simple VP8L file")
	}
	binary.LittleEndian.PutUint32(w[21:], 0x3fff|0x3fff<<14)
	out["webp"] = w
	return out
}

func TestDecodeRefusesBombsBeforeAllocating(t *testing.T) {
	for format, data := range bombs(t) {
		t.Run(format, func(t *testing.T) {
			if len(data) > 4096 {
				t.Fatalf("bomb is %d bytes; the test wants a small file", len(data))
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, _, err := Decode(data, Limits{})
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Decode error = %v, want ErrTooLarge", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("Decode allocated %d bytes before refusing; want < 1 MiB", grew)
			}
			if elapsed > time.Second { // generous: the machine may be busy
				t.Errorf("Decode took %v to refuse; want it immediate", elapsed)
			}
		})
	}
}

func TestDecodePixelCap(t *testing.T) {
	data := encode(t, "png", testImage(100, 50)) // 5000 pixels
	if _, _, err := Decode(data, Limits{MaxPixels: 5000}); err != nil {
		t.Errorf("Decode at exactly the cap: %v", err)
	}
	if _, _, err := Decode(data, Limits{MaxPixels: 4999}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Decode one pixel over the cap: error = %v, want ErrTooLarge", err)
	}
	if _, err := Prepare(pngHeaderOnly(1<<20, 1<<20), Limits{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Prepare of a 2^20×2^20 header: error = %v, want ErrTooLarge", err)
	}
}

func TestDecodeProgressiveJPEGBudget(t *testing.T) {
	baseline := encode(t, "jpeg", testImage(100, 100)) // 4:2:0, 10,000 pixels
	sof := bytes.Index(baseline, []byte{0xff, 0xc0})
	if sof < 0 {
		t.Fatal("no SOF0 marker in the test JPEG")
	}
	progressive := bytes.Clone(baseline)
	progressive[sof+1] = 0xc2 // same header, marked progressive
	fb, okb := parseJPEG(baseline)
	fp, okp := parseJPEG(progressive)
	if !okb || !okp || fb.progressive || !fp.progressive || len(fp.h) != 3 || fp.h[0] != 2 || fp.v[0] != 2 || fp.h[1] != 1 {
		t.Fatalf("parseJPEG misreads the frame: baseline %+v (%v), progressive %+v (%v)", fb, okb, fp, okp)
	}
	// Padded to 16×16 MCUs: 112×112 luma and two 56×56 chroma planes.
	const samples = 112*112 + 2*56*56
	if got := jpegBytes(baseline, 100, 100); got != samples {
		t.Errorf("jpegBytes(baseline) = %d, want %d", got, samples)
	}
	if got := jpegBytes(progressive, 100, 100); got != 5*samples {
		t.Errorf("jpegBytes(progressive) = %d, want %d (the image and int32 coefficients)", got, 5*samples)
	}
	// A budget between the two admits the baseline file and refuses the
	// progressive one from its header, before its (here bogus) scans.
	lim := Limits{MaxBytes: decoderOverhead + 10_000 + 2*samples}
	if _, _, err := Decode(baseline, lim); err != nil {
		t.Errorf("baseline JPEG within the budget: %v", err)
	}
	if _, _, err := Decode(progressive, lim); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "progressive jpeg") {
		t.Errorf("progressive JPEG over the budget: error = %v, want ErrTooLarge naming it", err)
	}
	for _, data := range [][]byte{nil, {0xff, 0xd8}, {0xff, 0xd8, 0xff, 0xe0, 0xff, 0xff}, []byte("\xff\xd8garbage"), {0xff, 0xd8, 0xff, 0xc0, 0, 0}} {
		if _, ok := parseJPEG(data); ok {
			t.Errorf("parseJPEG(%q) reports a frame", data)
		}
	}
}

func TestDecodeBadInput(t *testing.T) {
	pngData := encode(t, "png", testImage(64, 64))
	jpegData := encode(t, "jpeg", testImage(64, 64))
	gifData := encode(t, "gif", testImage(8, 8))

	zeroGIF := bytes.Clone(gifData)
	binary.LittleEndian.PutUint16(zeroGIF[6:], 0)

	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrUnsupported},
		{"plain text", []byte("not an image at all"), ErrUnsupported},
		{"html with a png inside", append([]byte("<html><body>"), pngData...), ErrUnsupported},
		{"truncated png header", pngData[:20], ErrCorrupt},
		{"truncated png data", pngData[:len(pngData)/2], ErrCorrupt},
		{"png without IEND", pngData[:len(pngData)-12], ErrCorrupt},
		{"truncated jpeg header", jpegData[:40], ErrCorrupt},
		{"truncated jpeg data", jpegData[:len(jpegData)/2], ErrCorrupt},
		{"png signature, jpeg body", append([]byte("\x89PNG\r\n\x1a\n"), jpegData...), ErrCorrupt},
		{"jpeg magic, html body", []byte("\xff\xd8\xff<html><script>alert(1)</script></html>"), ErrCorrupt},
		{"gif/javascript polyglot", []byte("GIF89a/*\x00\x00\x00\x00*/=1;alert(document.domain);"), ErrCorrupt},
		{"png/zip polyglot", append(bytes.Clone(pngData), []byte("PK\x03\x04\x14\x00\x00\x00\x08\x00payload")...), ErrCorrupt},
		{"png with zero width", pngHeaderOnly(0, 10), ErrCorrupt},
		{"gif with zero width", zeroGIF, ErrCorrupt},
		{"bmp with unsupported compression", bmpWithCompression(t, 4), ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, _, err := Decode(tt.data, Limits{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode error = %v, want %v", err, tt.want)
			}
			if img != nil {
				t.Errorf("Decode returned an image along with error %v", err)
			}
			if _, err := Prepare(tt.data, Limits{}); !errors.Is(err, tt.want) {
				t.Errorf("Prepare error = %v, want %v", err, tt.want)
			}
		})
	}
}

// bmpWithCompression returns a valid BMP whose compression field is set to
// c, which the decoder does not implement for values other than 0 and 3.
func bmpWithCompression(t testing.TB, c uint32) []byte {
	b := encode(t, "bmp", testImage(4, 4))
	binary.LittleEndian.PutUint32(b[30:], c)
	return b
}

func TestGuardRecoversPanics(t *testing.T) {
	_, err := guard("png", "data", func() (image.Image, error) {
		var m map[string]int
		m["boom"]++ // a nil-map write, as a decoder bug would
		return nil, nil
	})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("guard error = %v, want ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), "png decoder failed") {
		t.Errorf("guard error %q does not name the failing decoder", err)
	}
}

func TestContentType(t *testing.T) {
	for _, f := range Formats() {
		if got := ContentType(f); got != "image/"+f {
			t.Errorf("ContentType(%q) = %q, want image/%s", f, got, f)
		}
	}
	if got := ContentType("svg"); got != "" {
		t.Errorf(`ContentType("svg") = %q, want ""`, got)
	}
}
