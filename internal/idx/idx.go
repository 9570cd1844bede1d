// Package idx reads and writes the IDX files that Fashion-MNIST is
// distributed in, finds the dataset on disk, verifies it against the
// official checksums and downloads it.
//
// An IDX file is a 4-byte magic number (two zero bytes, an element type
// and the number of dimensions), one big-endian uint32 per dimension and
// then the elements in row-major order. Fashion-MNIST uses unsigned bytes
// (type 0x08): images have three dimensions (count, rows, columns) and
// labels one (count). Files may be gzip-compressed; the readers detect
// compression from the gzip magic bytes, never from the file name.
//
// Every reader validates the header against explicit limits, and against
// the input's length when that is known, before allocating, so malformed
// input yields an error and never a panic or a huge allocation.
package idx

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// Format constants of the IDX files this package reads.
const (
	// ImagesMagic is the magic number of an IDX file of unsigned-byte
	// images: type 0x08, three dimensions.
	ImagesMagic = 0x00000803
	// LabelsMagic is the magic number of an IDX file of unsigned-byte
	// labels: type 0x08, one dimension.
	LabelsMagic = 0x00000801

	typeUbyte = 0x08
)

// Limits that headers are checked against before anything is allocated.
// They are generous for Fashion-MNIST (60,000 training images of 28×28)
// yet keep the largest allocation a corrupt header can cause at about
// 78 MB.
const (
	// MaxImages is the largest image (and label) count a file may declare.
	MaxImages = 100_000
	// MaxSide is the largest number of rows or columns an image may have.
	MaxSide = 1024
	// MaxPixels is the largest total number of pixels (count × rows ×
	// columns) an image file may declare: MaxImages images of 28×28.
	MaxPixels = MaxImages * 28 * 28
	// NumClasses is the number of Fashion-MNIST classes; every label must
	// be below it.
	NumClasses = 10
)

// maxDeflateRatio bounds how many bytes one byte of deflate data can
// expand to (the format's limit is 1032:1). It lets a reader that knows
// the compressed length reject impossible headers before allocating.
const maxDeflateRatio = 1032

// Images is a set of equally sized greyscale images stored row-major in one
// slice, so the whole set costs a single allocation: image i is
// Pix[i*Rows*Cols : (i+1)*Rows*Cols].
type Images struct {
	N, Rows, Cols int
	Pix           []uint8
}

// Image returns the pixels of image i, sharing memory with im.Pix.
func (im Images) Image(i int) []uint8 {
	n := im.Rows * im.Cols
	return im.Pix[i*n : (i+1)*n : (i+1)*n]
}

// Set is a labelled set of images: Labels[i] is the class of image i.
type Set struct {
	Images Images
	Labels []uint8
}

// Head returns the first n images of s, sharing its memory; n ≤ 0 or
// n ≥ s.Images.N returns s whole.
func (s Set) Head(n int) Set {
	if n <= 0 || n >= s.Images.N {
		return s
	}
	s.Images.N = n
	s.Images.Pix = s.Images.Pix[:n*s.Images.Rows*s.Images.Cols]
	s.Labels = s.Labels[:n]
	return s
}

// Dataset holds the official training and test sets.
type Dataset struct {
	Train, Test Set
}

// FormatError reports input that is not a valid IDX file of the expected
// kind or that exceeds this package's limits, as opposed to an I/O error.
type FormatError struct {
	// Problem says what is wrong with the input.
	Problem string
	// Err is the underlying error, if any (for example a gzip error).
	Err error
}

func (e *FormatError) Error() string {
	if e.Err != nil {
		return e.Problem + ": " + e.Err.Error()
	}
	return e.Problem
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatErrorf(format string, args ...any) error {
	return &FormatError{Problem: fmt.Sprintf(format, args...)}
}

// ReadImages reads an IDX image file (raw or gzip-compressed) from r. It
// checks the magic number, element type and dimensions before allocating,
// reads all pixels into one slice and fails if the input is truncated or
// has data after the last image.
func ReadImages(r io.Reader) (Images, error) {
	in, err := open(r)
	if err != nil {
		return Images{}, err
	}
	dims, err := in.header(ImagesMagic, "image")
	if err != nil {
		return Images{}, err
	}
	n, rows, cols := int64(dims[0]), int64(dims[1]), int64(dims[2])
	switch {
	case n > MaxImages:
		return Images{}, formatErrorf("header declares %d images, more than the limit of %d", n, MaxImages)
	case rows == 0 || cols == 0:
		return Images{}, formatErrorf("header declares images of %d×%d pixels; both sides must be positive", rows, cols)
	case rows > MaxSide || cols > MaxSide:
		return Images{}, formatErrorf("header declares images of %d×%d pixels, larger than the limit of %d per side", rows, cols, MaxSide)
	case n*rows*cols > MaxPixels:
		return Images{}, formatErrorf("header declares %d images of %d×%d = %d pixels, more than the limit of %d", n, rows, cols, n*rows*cols, MaxPixels)
	}
	size := n * rows * cols
	if err := in.checkLength(size, fmt.Sprintf("%d images of %d×%d", n, rows, cols)); err != nil {
		return Images{}, err
	}
	pix, err := in.body(size, "image")
	if err != nil {
		return Images{}, err
	}
	return Images{N: int(n), Rows: int(rows), Cols: int(cols), Pix: pix}, nil
}

// ReadLabels reads an IDX label file (raw or gzip-compressed) from r. Like
// ReadImages it validates the header before allocating and rejects
// truncated input and trailing data; it also rejects any label that is not
// a Fashion-MNIST class (0 to NumClasses-1).
func ReadLabels(r io.Reader) ([]uint8, error) {
	in, err := open(r)
	if err != nil {
		return nil, err
	}
	dims, err := in.header(LabelsMagic, "label")
	if err != nil {
		return nil, err
	}
	n := int64(dims[0])
	if n > MaxImages {
		return nil, formatErrorf("header declares %d labels, more than the limit of %d", n, MaxImages)
	}
	if err := in.checkLength(n, fmt.Sprintf("%d labels", n)); err != nil {
		return nil, err
	}
	labels, err := in.body(n, "label")
	if err != nil {
		return nil, err
	}
	for i, l := range labels {
		if l >= NumClasses {
			return nil, formatErrorf("label %d at index %d is not a class (labels must be 0 to %d)", l, i, NumClasses-1)
		}
	}
	return labels, nil
}

// input is an IDX stream being decoded: the decompressed bytes, plus what
// is known about the length of the underlying data.
type input struct {
	r io.Reader
	// gzipped records whether r decompresses the underlying data.
	gzipped bool
	// known is the number of bytes of underlying data (compressed if
	// gzipped) when the source reveals it, or -1.
	known int64
	// hdrLen is the number of header bytes consumed so far.
	hdrLen int64
}

// open wraps r in a buffered reader and, if the data starts with the gzip
// magic bytes, in a gzip reader.
func open(r io.Reader) (*input, error) {
	known := remaining(r)
	bufSize := 64 << 10
	if known >= 0 && known < int64(bufSize) {
		bufSize = int(known) // bufio raises this to its minimum of 16
	}
	br := bufio.NewReaderSize(r, bufSize)
	in := &input{r: br, known: known}
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading: %w", err)
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, gzipError("reading gzip header", err)
		}
		in.r, in.gzipped = zr, true
	}
	return in, nil
}

// remaining reports how many bytes r will yield, for the readers whose
// length is known up front (in-memory readers and regular files), or -1.
func remaining(r io.Reader) int64 {
	switch r := r.(type) {
	case interface{ Len() int }: // bytes.Reader, bytes.Buffer, strings.Reader
		return int64(r.Len())
	case *os.File:
		fi, err := r.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return -1
		}
		off, err := r.Seek(0, io.SeekCurrent)
		if err != nil || off > fi.Size() {
			return -1
		}
		return fi.Size() - off
	}
	return -1
}

// header reads and checks the magic number and dimensions of a file of
// kind ("image" or "label") and returns the dimensions.
func (in *input) header(wantMagic uint32, kind string) ([]uint32, error) {
	var buf [4 * 4]byte
	if n, err := io.ReadFull(in.r, buf[:4]); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return nil, formatErrorf("empty input: not an IDX %s file", kind)
		}
		return nil, in.readError(err, fmt.Sprintf("truncated header: got %d of 4 magic-number bytes", n))
	}
	magic := binary.BigEndian.Uint32(buf[:4])
	if magic != wantMagic {
		return nil, magicError(magic, wantMagic, kind)
	}
	ndims := int(buf[3])
	hdr := buf[:4*ndims]
	if n, err := io.ReadFull(in.r, hdr); err != nil {
		return nil, in.readError(err, fmt.Sprintf("truncated header: got %d of %d dimension bytes", n, len(hdr)))
	}
	in.hdrLen = 4 + int64(len(hdr))
	dims := make([]uint32, ndims)
	for i := range dims {
		dims[i] = binary.BigEndian.Uint32(hdr[4*i:])
	}
	return dims, nil
}

// magicError explains a wrong magic number, recognising the common mix-up
// of an image file for a label file and vice versa.
func magicError(got, want uint32, kind string) error {
	switch {
	case got>>16 != 0:
		return formatErrorf("bad magic number 0x%08x: not an IDX file (want 0x%08x)", got, want)
	case byte(got>>8) != typeUbyte:
		return formatErrorf("element type 0x%02x in magic number 0x%08x, want 0x%02x (unsigned byte)", byte(got>>8), got, typeUbyte)
	case got == ImagesMagic:
		return formatErrorf("magic number 0x%08x is that of an image file, want 0x%08x (a label file)", got, want)
	case got == LabelsMagic:
		return formatErrorf("magic number 0x%08x is that of a label file, want 0x%08x (an image file)", got, want)
	}
	return formatErrorf("magic number 0x%08x declares %d dimensions, want 0x%08x (%d for a %s file)", got, byte(got), want, byte(want), kind)
}

// checkLength compares the size the header declares with the length of
// the input, when known, so a lying header is caught before allocation.
func (in *input) checkLength(size int64, what string) error {
	if in.known < 0 {
		return nil
	}
	if in.gzipped {
		if limit := in.known * maxDeflateRatio; in.hdrLen+size > limit {
			return formatErrorf("truncated: header declares %s (%d bytes), more than %d bytes of gzip data can hold", what, size, in.known)
		}
		return nil
	}
	switch body := in.known - in.hdrLen; {
	case body < size:
		return formatErrorf("truncated: header declares %s (%d bytes) but only %d bytes follow the header", what, size, body)
	case body > size:
		return formatErrorf("%d bytes of trailing data after %s", body-size, what)
	}
	return nil
}

// body reads size bytes of elements and checks that the input ends there.
func (in *input) body(size int64, kind string) ([]uint8, error) {
	dst, err := in.fill(size)
	if err != nil {
		return nil, in.readError(err, fmt.Sprintf("truncated: got %d of %d %s bytes", len(dst), size, kind))
	}
	return dst, in.end(kind)
}

// growChunk is how much a reader of unknown length allocates before the
// data has shown up to fill it.
const growChunk = 1 << 20

// fill reads size bytes. When checkLength has vouched for the input's
// length, it allocates them at once; otherwise it grows the buffer as data
// arrives, so a short input that declares a huge size cannot make it
// allocate much more than it sends. It returns what it read so far on
// error.
func (in *input) fill(size int64) ([]uint8, error) {
	if in.known >= 0 || size <= growChunk {
		dst := make([]uint8, size)
		n, err := io.ReadFull(in.r, dst)
		return dst[:n], err
	}
	dst := make([]uint8, 0, growChunk)
	for int64(len(dst)) < size {
		if len(dst) == cap(dst) {
			dst = slices.Grow(dst, int(min(int64(cap(dst)), size-int64(len(dst)))))
		}
		n, err := io.ReadFull(in.r, dst[len(dst):min(int64(cap(dst)), size)])
		dst = dst[:len(dst)+n]
		if err != nil {
			return dst, err
		}
	}
	return dst[:size:size], nil
}

// end checks that the input ends after the last element (which also
// makes a gzip reader verify its checksum).
func (in *input) end(kind string) error {
	var one [1]byte
	n, err := io.ReadFull(in.r, one[:])
	switch {
	case n == 1:
		extra, _ := io.Copy(io.Discard, io.LimitReader(in.r, 1<<20))
		if extra == 1<<20 {
			return formatErrorf("trailing data after the last %s (more than 1 MiB)", kind)
		}
		return formatErrorf("%d bytes of trailing data after the last %s", extra+1, kind)
	case errors.Is(err, io.EOF):
		return nil
	case in.gzipped && (errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF)):
		// The decompressed data is complete, so what failed is the gzip
		// trailer or a further (garbage) gzip member after it.
		return &FormatError{Problem: fmt.Sprintf("corrupt gzip data after the last %s: truncated gzip trailer or trailing garbage", kind), Err: err}
	}
	return in.readError(err, fmt.Sprintf("reading past the last %s", kind))
}

// readError turns a failed read into an error that tells a truncated or
// corrupt input (a FormatError saying what) from an I/O failure.
func (in *input) readError(err error, truncated string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if in.gzipped {
			return formatErrorf("%s (gzip stream ends early)", truncated)
		}
		return formatErrorf("%s", truncated)
	}
	if in.gzipped {
		return gzipError("decompressing", err)
	}
	return fmt.Errorf("reading: %w", err)
}

// gzipError wraps a gzip decoding failure, reporting corrupt compressed
// data as a FormatError.
func gzipError(context string, err error) error {
	var corrupt flate.CorruptInputError
	if errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &corrupt) {
		return &FormatError{Problem: "corrupt gzip data (" + context + ")", Err: err}
	}
	return fmt.Errorf("%s: %w", context, err)
}

// WriteImages writes im to w as a raw IDX image file. It refuses sets that
// ReadImages would reject, so everything it writes can be read back; wrap w
// in a gzip.Writer to write a compressed file.
func WriteImages(w io.Writer, im Images) error {
	switch {
	case im.N < 0 || im.N > MaxImages:
		return fmt.Errorf("cannot write %d images: count must be 0 to %d", im.N, MaxImages)
	case im.Rows <= 0 || im.Cols <= 0 || im.Rows > MaxSide || im.Cols > MaxSide:
		return fmt.Errorf("cannot write images of %d×%d pixels: sides must be 1 to %d", im.Rows, im.Cols, MaxSide)
	case im.N*im.Rows*im.Cols > MaxPixels:
		return fmt.Errorf("cannot write %d images of %d×%d: more than %d pixels", im.N, im.Rows, im.Cols, MaxPixels)
	case len(im.Pix) != im.N*im.Rows*im.Cols:
		return fmt.Errorf("cannot write %d images of %d×%d: Pix has %d bytes, want %d", im.N, im.Rows, im.Cols, len(im.Pix), im.N*im.Rows*im.Cols)
	}
	return write(w, ImagesMagic, []int{im.N, im.Rows, im.Cols}, im.Pix)
}

// WriteLabels writes labels to w as a raw IDX label file. Like WriteImages
// it refuses what ReadLabels would reject: too many labels, or a label
// that is not a class.
func WriteLabels(w io.Writer, labels []uint8) error {
	if len(labels) > MaxImages {
		return fmt.Errorf("cannot write %d labels: more than %d", len(labels), MaxImages)
	}
	for i, l := range labels {
		if l >= NumClasses {
			return fmt.Errorf("cannot write label %d at index %d: labels must be 0 to %d", l, i, NumClasses-1)
		}
	}
	return write(w, LabelsMagic, []int{len(labels)}, labels)
}

func write(w io.Writer, magic uint32, dims []int, data []uint8) error {
	var hdr bytes.Buffer
	hdr.Grow(4 + 4*len(dims))
	hdr.Write(binary.BigEndian.AppendUint32(nil, magic))
	for _, d := range dims {
		hdr.Write(binary.BigEndian.AppendUint32(nil, uint32(d)))
	}
	if _, err := w.Write(hdr.Bytes()); err != nil {
		return fmt.Errorf("writing header: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("writing data: %w", err)
	}
	return nil
}
