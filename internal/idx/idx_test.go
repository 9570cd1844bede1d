package idx

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// testImages returns n images of rows×cols with pixels that differ from
// image to image, so mix-ups show.
func testImages(n, rows, cols int) Images {
	pix := make([]uint8, n*rows*cols)
	for i := range pix {
		pix[i] = uint8(i*7 + i/(rows*cols))
	}
	return Images{N: n, Rows: rows, Cols: cols, Pix: pix}
}

func testLabels(n int) []uint8 {
	l := make([]uint8, n)
	for i := range l {
		l[i] = uint8(i % NumClasses)
	}
	return l
}

func encodeImages(t testing.TB, im Images) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteImages(&b, im); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeLabels(t testing.TB, l []uint8) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteLabels(&b, l); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// header builds an IDX header by hand, for inputs WriteImages refuses to
// produce.
func header(magic uint32, dims ...uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, magic)
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// lenless hides the Len method of an in-memory reader, so the reader
// cannot check lengths up front and must detect problems while reading.
type lenless struct{ r io.Reader }

func (l lenless) Read(p []byte) (int, error) { return l.r.Read(p) }

func TestReadImagesValid(t *testing.T) {
	im := testImages(3, 4, 5)
	raw := encodeImages(t, im)
	tests := []struct {
		name string
		r    io.Reader
		want Images
	}{
		{"raw", bytes.NewReader(raw), im},
		{"gzip", bytes.NewReader(gz(t, raw)), im},
		{"raw, unknown length", lenless{bytes.NewReader(raw)}, im},
		{"gzip, unknown length", lenless{bytes.NewReader(gz(t, raw))}, im},
		{"raw, one byte per read", iotest.OneByteReader(bytes.NewReader(raw)), im},
		{"gzip, one byte per read", iotest.OneByteReader(bytes.NewReader(gz(t, raw))), im},
		{"no images", bytes.NewReader(header(ImagesMagic, 0, 28, 28)), Images{N: 0, Rows: 28, Cols: 28, Pix: []uint8{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadImages(tt.r)
			if err != nil {
				t.Fatalf("ReadImages: %v", err)
			}
			if got.N != tt.want.N || got.Rows != tt.want.Rows || got.Cols != tt.want.Cols {
				t.Fatalf("got %d images of %d×%d, want %d of %d×%d", got.N, got.Rows, got.Cols, tt.want.N, tt.want.Rows, tt.want.Cols)
			}
			if !bytes.Equal(got.Pix, tt.want.Pix) {
				t.Fatalf("pixels differ")
			}
		})
	}
}

func TestReadImagesLargeUnknownLength(t *testing.T) {
	// More than growChunk bytes, so a reader of unknown length grows its
	// buffer several times.
	im := testImages(4000, 28, 28)
	raw := encodeImages(t, im)
	for name, in := range map[string][]byte{"raw": raw, "gzip": gz(t, raw)} {
		t.Run(name, func(t *testing.T) {
			got, err := ReadImages(lenless{bytes.NewReader(in)})
			if err != nil {
				t.Fatalf("ReadImages: %v", err)
			}
			if got.N != im.N || !bytes.Equal(got.Pix, im.Pix) || len(got.Pix) != cap(got.Pix) {
				t.Fatalf("got %d images (%d bytes, cap %d), want %d identical ones", got.N, len(got.Pix), cap(got.Pix), im.N)
			}
			trunc := in[:len(in)-len(in)/3]
			if _, err := ReadImages(lenless{bytes.NewReader(trunc)}); err == nil || !strings.Contains(err.Error(), "truncated") {
				t.Fatalf("truncated input: error %v, want truncated", err)
			}
		})
	}
}

// TestReadImagesBoundedAllocation checks that a few bytes declaring the
// largest allowed set do not make the reader allocate that much.
func TestReadImagesBoundedAllocation(t *testing.T) {
	for name, in := range map[string][]byte{
		"raw":  header(ImagesMagic, MaxImages, 28, 28),
		"gzip": gz(t, header(ImagesMagic, MaxImages, 28, 28)),
	} {
		for rname, r := range map[string]func() io.Reader{
			"bytes.Reader": func() io.Reader { return bytes.NewReader(in) },
			"lenless":      func() io.Reader { return lenless{bytes.NewReader(in)} },
		} {
			t.Run(name+", "+rname, func(t *testing.T) {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				_, err := ReadImages(r())
				runtime.ReadMemStats(&after)
				if err == nil {
					t.Fatal("ReadImages accepted a header without pixels")
				}
				if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
					t.Fatalf("allocated %d bytes for a %d-byte input", alloc, len(in))
				}
			})
		}
	}
}

func TestImagesImage(t *testing.T) {
	im := testImages(3, 2, 2)
	got := im.Image(1)
	if !bytes.Equal(got, im.Pix[4:8]) {
		t.Fatalf("Image(1) = %v, want %v", got, im.Pix[4:8])
	}
	if cap(got) != 4 {
		t.Fatalf("Image(1) has capacity %d, want 4 so appends cannot clobber image 2", cap(got))
	}
}

func TestReadImagesErrors(t *testing.T) {
	im := testImages(3, 4, 5)
	raw := encodeImages(t, im)
	gzipped := gz(t, raw)
	corrupt := bytes.Clone(gzipped)
	corrupt[len(corrupt)-9] ^= 0xff // last byte of deflate data or CRC: fails the CRC or decoding
	tests := []struct {
		name string
		in   []byte
		// readers says which readers the input is given through: "known"
		// (a bytes.Reader, whose length is checked before reading),
		// "unknown" (a reader hiding its length, so problems are found
		// while reading) or "both".
		readers string
		want    string
	}{
		{"empty", nil, "both", "empty input"},
		{"short magic", []byte{0, 0}, "both", "truncated header: got 2 of 4 magic-number bytes"},
		{"not IDX", []byte("GIF89a and more bytes to fill the header"), "both", "not an IDX file"},
		{"float type", header(0x00000d03, 1, 1, 1), "both", "element type 0x0d"},
		{"label file", encodeLabels(t, testLabels(3)), "both", "that of a label file"},
		{"two dimensions", header(0x00000802, 1, 1), "both", "declares 2 dimensions"},
		{"truncated dims", header(ImagesMagic, 3, 4)[:10], "both", "truncated header: got 6 of 12 dimension bytes"},
		{"truncated dims gzip", gz(t, header(ImagesMagic, 3, 4)), "both", "truncated header: got 8 of 12 dimension bytes"},
		{"too many images", header(ImagesMagic, MaxImages+1, 28, 28), "both", "100001 images, more than the limit"},
		{"huge dims", header(ImagesMagic, 0xffffffff, 0xffffffff, 0xffffffff), "both", "more than the limit"},
		{"zero rows", header(ImagesMagic, 1, 0, 28), "both", "both sides must be positive"},
		{"side too big", header(ImagesMagic, 1, MaxSide+1, 1), "both", "larger than the limit of 1024 per side"},
		{"too many pixels", header(ImagesMagic, MaxImages, 32, 32), "both", "more than the limit of 78400000"},
		{"truncated pixels", raw[:len(raw)-1], "known", "truncated: header declares 3 images of 4×5 (60 bytes) but only 59 bytes follow"},
		{"truncated pixels, unknown length", raw[:len(raw)-1], "unknown", "truncated: got 59 of 60 image bytes"},
		{"trailing data", cat(raw, []byte{1, 2}), "known", "2 bytes of trailing data after 3 images"},
		{"trailing data, unknown length", cat(raw, []byte{1, 2}), "unknown", "2 bytes of trailing data after the last image"},
		{"gzip truncated pixels", gz(t, raw[:len(raw)-1]), "both", "truncated: got 59 of 60 image bytes (gzip stream ends early)"},
		{"gzip trailing data inside", gz(t, cat(raw, []byte{9})), "both", "1 bytes of trailing data after the last image"},
		{"gzip garbage after stream", cat(gzipped, []byte("garbage after the stream")), "both", "trailing garbage"},
		{"gzip short garbage after stream", cat(gzipped, []byte{0}), "both", "trailing garbage"},
		{"gzip cut in deflate data", gzipped[:20], "both", "gzip stream ends early"},
		{"gzip cut in trailer", gzipped[:len(gzipped)-3], "both", "truncated gzip trailer"},
		{"gzip corrupt", corrupt, "both", "corrupt gzip data"},
		{"gzip bad header", []byte{0x1f, 0x8b, 0, 0}, "both", "corrupt gzip data (reading gzip header)"},
		{"gzip claims too much", gz(t, header(ImagesMagic, MaxImages, 28, 28)), "known", "more than 38 bytes of gzip data can hold"},
	}
	for _, tt := range tests {
		readers := map[string]func() io.Reader{}
		if tt.readers != "unknown" {
			readers[", bytes.Reader"] = func() io.Reader { return bytes.NewReader(tt.in) }
		}
		if tt.readers != "known" {
			readers[", lenless"] = func() io.Reader { return lenless{bytes.NewReader(tt.in)} }
		}
		for suffix, r := range readers {
			t.Run(tt.name+suffix, func(t *testing.T) {
				_, err := ReadImages(r())
				if err == nil {
					t.Fatalf("ReadImages succeeded, want error containing %q", tt.want)
				}
				var fe *FormatError
				if !errors.As(err, &fe) {
					t.Errorf("error %q (%T) is not a *FormatError", err, err)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %q does not contain %q", err, tt.want)
				}
			})
		}
	}
}

func TestReadIOError(t *testing.T) {
	boom := errors.New("disk on fire")
	raw := encodeImages(t, testImages(2, 3, 3))
	for _, tt := range []struct {
		name string
		r    io.Reader
	}{
		{"at start", iotest.ErrReader(boom)},
		{"in header", io.MultiReader(bytes.NewReader(raw[:6]), iotest.ErrReader(boom))},
		{"in body", io.MultiReader(bytes.NewReader(raw[:20]), iotest.ErrReader(boom))},
		{"in gzip", io.MultiReader(bytes.NewReader(gz(t, raw)[:12]), iotest.ErrReader(boom))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadImages(tt.r)
			if !errors.Is(err, boom) {
				t.Fatalf("error %v does not wrap the reader's error", err)
			}
			var fe *FormatError
			if errors.As(err, &fe) {
				t.Fatalf("I/O error %q reported as a format error", err)
			}
		})
	}
}

func TestReadLabels(t *testing.T) {
	labels := testLabels(25)
	raw := encodeLabels(t, labels)
	tests := []struct {
		name string
		in   []byte
		want string // error substring; empty for success
		// wantLabels are the labels expected on success.
		wantLabels []uint8
	}{
		{"raw", raw, "", labels},
		{"gzip", gz(t, raw), "", labels},
		{"empty set", header(LabelsMagic, 0), "", []uint8{}},
		{"empty input", nil, "empty input", nil},
		{"image file", encodeImages(t, testImages(1, 2, 2)), "that of an image file", nil},
		{"too many", header(LabelsMagic, MaxImages+1), "100001 labels, more than the limit", nil},
		{"truncated", raw[:len(raw)-1], "truncated: header declares 25 labels (25 bytes) but only 24", nil},
		{"truncated gzip", gz(t, raw[:len(raw)-1]), "truncated: got 24 of 25 label bytes", nil},
		{"trailing", cat(raw, []byte{0}), "1 bytes of trailing data after 25 labels", nil},
		{"not a class", cat(header(LabelsMagic, 3), []byte{0, 9, 10}), "label 10 at index 2 is not a class", nil},
		{"not a class gzip", gz(t, cat(header(LabelsMagic, 2), []byte{255, 0})), "label 255 at index 0 is not a class", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadLabels(bytes.NewReader(tt.in))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ReadLabels: %v", err)
				}
				if got == nil || !bytes.Equal(got, tt.wantLabels) {
					t.Fatalf("got labels %v, want %v", got, tt.wantLabels)
				}
				return
			}
			if err == nil {
				t.Fatalf("ReadLabels succeeded, want error containing %q", tt.want)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Errorf("error %q is not a *FormatError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestWriteRefusesInvalid(t *testing.T) {
	tests := []struct {
		name  string
		write func(io.Writer) error
		want  string
	}{
		{"short Pix", func(w io.Writer) error { return WriteImages(w, Images{N: 2, Rows: 2, Cols: 2, Pix: make([]uint8, 7)}) }, "Pix has 7 bytes, want 8"},
		{"negative count", func(w io.Writer) error { return WriteImages(w, Images{N: -1, Rows: 2, Cols: 2}) }, "count must be"},
		{"zero side", func(w io.Writer) error { return WriteImages(w, Images{N: 1, Rows: 0, Cols: 2}) }, "sides must be"},
		{"too many pixels", func(w io.Writer) error { return WriteImages(w, Images{N: MaxImages, Rows: 29, Cols: 28}) }, "more than 78400000 pixels"},
		{"bad label", func(w io.Writer) error { return WriteLabels(w, []uint8{1, 10}) }, "label 10 at index 1"},
		{"too many labels", func(w io.Writer) error { return WriteLabels(w, make([]uint8, MaxImages+1)) }, "cannot write 100001 labels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			err := tt.write(&b)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
			if b.Len() != 0 {
				t.Fatalf("wrote %d bytes despite the error", b.Len())
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	boom := errors.New("full")
	err := WriteImages(failWriter{boom}, testImages(1, 2, 2))
	if !errors.Is(err, boom) {
		t.Fatalf("WriteImages error %v does not wrap the writer's error", err)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

func FuzzReadImages(f *testing.F) {
	raw := encodeImages(f, testImages(2, 3, 4))
	f.Add(raw)
	f.Add(gz(f, raw))
	f.Add(raw[:len(raw)-1])
	f.Add(cat(raw, []byte{0}))
	f.Add(header(ImagesMagic, 1, 1, 1))
	f.Add(header(ImagesMagic, MaxImages, 28, 28))
	f.Add(gz(f, header(ImagesMagic, 0xffffffff, 1, 1)))
	f.Add(encodeLabels(f, testLabels(3)))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, r := range []io.Reader{bytes.NewReader(data), lenless{bytes.NewReader(data)}} {
			im, err := ReadImages(r)
			if err != nil {
				continue
			}
			if im.N < 0 || im.N > MaxImages || im.Rows < 1 || im.Cols < 1 || len(im.Pix) != im.N*im.Rows*im.Cols || len(im.Pix) > MaxPixels {
				t.Fatalf("accepted an invalid set: N=%d %d×%d with %d pixels", im.N, im.Rows, im.Cols, len(im.Pix))
			}
			// A raw file that reads back must be exactly what WriteImages
			// produces for its contents.
			if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
				if again := encodeImages(t, im); !bytes.Equal(again, data) {
					t.Fatalf("accepted raw input differs from its re-encoding")
				}
			}
		}
	})
}

func FuzzReadLabels(f *testing.F) {
	raw := encodeLabels(f, testLabels(12))
	f.Add(raw)
	f.Add(gz(f, raw))
	f.Add(raw[:len(raw)-1])
	f.Add(cat(raw, []byte{0}))
	f.Add(cat(header(LabelsMagic, 1), []byte{10}))
	f.Add(header(LabelsMagic, MaxImages))
	f.Add(encodeImages(f, testImages(1, 1, 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, r := range []io.Reader{bytes.NewReader(data), lenless{bytes.NewReader(data)}} {
			labels, err := ReadLabels(r)
			if err != nil {
				continue
			}
			if len(labels) > MaxImages {
				t.Fatalf("accepted %d labels", len(labels))
			}
			for i, l := range labels {
				if l >= NumClasses {
					t.Fatalf("accepted label %d at %d", l, i)
				}
			}
			if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
				if again := encodeLabels(t, labels); !bytes.Equal(again, data) {
					t.Fatalf("accepted raw input differs from its re-encoding")
				}
			}
		}
	})
}
