// Package safetensors reads and writes the safetensors format: an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, then the raw little-endian tensor data. It is the
// format Hugging Face tools use, safe to load from untrusted sources because
// it holds no code, only numbers.
//
// Float32 ("F32"), IEEE half-precision ("F16", smaller weight storage,
// widened to float32 when read), int8 ("I8", quantized weights) and uint8
// ("U8", raw bytes such as an int8 file's ONNX graph) tensors are
// supported; that is all our models use.
package safetensors

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"

	"github.com/x448/float16"

	"github.com/fashion-classifier/fashion/internal/atomicfile"
	"github.com/fashion-classifier/fashion/internal/safefile"
)

// MaxHeader bounds the JSON header. Real headers of our models are a few
// kilobytes; the cap stops a corrupt length from causing a huge allocation.
const MaxHeader = 16 << 20

// Tensor is one named array: float32 (Data) or, when Int8 is non-nil,
// int8 (Int8, and Data is nil).
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
	// Half stores Data as IEEE 754 half precision ("F16"), half the bytes
	// of "F32": Encode rounds each value to the nearest half (ties to
	// even; see RoundF16) and refuses a finite value beyond half's range;
	// Decode sets Half for an F16 tensor and widens its values, exactly,
	// into Data.
	Half bool
	Int8 []int8
	// U8 holds a uint8 ("U8") tensor's bytes; Data and Int8 are then nil.
	U8 []uint8
}

// MaxF16 is the largest finite half-precision value. Finite values that
// round beyond it (from 65520 up) have no F16 encoding.
const MaxF16 = 65504

// RoundF16 returns v rounded to the nearest half-precision value, ties to
// even, as an F16 tensor stores it: relative error at most 2⁻¹¹ for
// |v| in [2⁻¹⁴, 65504], smaller values rounded to multiples of 2⁻²⁴
// (half's subnormals), larger ones to ±Inf; NaN stays NaN.
func RoundF16(v float32) float32 { return float16.Fromfloat32(v).Float32() }

// File is the decoded content of a safetensors file.
type File struct {
	Metadata map[string]string
	Tensors  []Tensor // in file order
}

// Lookup returns the tensor with the given name.
func (f *File) Lookup(name string) (Tensor, bool) {
	for _, t := range f.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

type entry struct {
	DType   string   `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// Decode parses a whole safetensors file, validating the header, every
// tensor's dtype, shape and byte range (in bounds, non-overlapping, sized
// to match the shape) before converting any data.
func Decode(data []byte) (*File, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("safetensors: file is %d bytes, too short for the 8-byte header length", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > MaxHeader || n > uint64(len(data)-8) {
		return nil, fmt.Errorf("safetensors: header length %d does not fit in a %d-byte file (truncated or not a safetensors file)", n, len(data))
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data[8 : 8+n]))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("safetensors: header is not valid JSON: %w", err)
	}
	body := data[8+n:]
	f := &File{Metadata: map[string]string{}}
	type span struct {
		name       string
		begin, end int64
	}
	var spans []span
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, fmt.Errorf("safetensors: __metadata__ must map strings to strings: %w", err)
			}
			continue
		}
		var e entry
		d := json.NewDecoder(bytes.NewReader(msg))
		d.DisallowUnknownFields()
		if err := d.Decode(&e); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: bad header entry: %w", name, err)
		}
		size := int64(4)
		switch e.DType {
		case "F32":
		case "F16":
			size = 2
		case "I8", "U8":
			size = 1
		default:
			return nil, fmt.Errorf("safetensors: tensor %q has dtype %q; only F32, F16, I8 and U8 are supported", name, e.DType)
		}
		count := int64(1)
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && count > math.MaxInt32/int64(d)) {
				return nil, fmt.Errorf("safetensors: tensor %q has invalid shape %v", name, e.Shape)
			}
			count *= int64(d)
		}
		b, end := e.Offsets[0], e.Offsets[1]
		if b < 0 || end < b || end > int64(len(body)) {
			return nil, fmt.Errorf("safetensors: tensor %q byte range [%d,%d) is outside the %d data bytes (truncated file?)", name, b, end, len(body))
		}
		if end-b != size*count {
			return nil, fmt.Errorf("safetensors: tensor %q of shape %v needs %d bytes, header gives %d", name, e.Shape, size*count, end-b)
		}
		t := Tensor{Name: name, Shape: e.Shape}
		switch src := body[b:end]; size {
		case 1:
			if e.DType == "U8" {
				t.U8 = append([]uint8{}, src...)
				break
			}
			t.Int8 = make([]int8, count)
			for i := range t.Int8 {
				t.Int8[i] = int8(src[i])
			}
		case 2:
			t.Half = true
			t.Data = make([]float32, count)
			for i := range t.Data {
				t.Data[i] = float16.Frombits(binary.LittleEndian.Uint16(src[2*i:])).Float32()
			}
		default:
			t.Data = make([]float32, count)
			for i := range t.Data {
				t.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
			}
		}
		f.Tensors = append(f.Tensors, t)
		spans = append(spans, span{name, b, end})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].begin < spans[j].begin })
	for i := 1; i < len(spans); i++ {
		if spans[i].begin < spans[i-1].end {
			return nil, fmt.Errorf("safetensors: tensors %q and %q overlap", spans[i-1].name, spans[i].name)
		}
	}
	order := make(map[string]int64, len(spans))
	for _, s := range spans {
		order[s.name] = s.begin
	}
	sort.SliceStable(f.Tensors, func(i, j int) bool { return order[f.Tensors[i].Name] < order[f.Tensors[j].Name] })
	return f, nil
}

// Encode writes tensors and metadata in safetensors form, data in the
// given order. It refuses a Half tensor with a finite value that half
// precision cannot hold (see MaxF16) rather than store it as infinity.
func Encode(w io.Writer, f *File) error {
	header := map[string]any{}
	if len(f.Metadata) > 0 {
		header["__metadata__"] = f.Metadata
	}
	var off int64
	for _, t := range f.Tensors {
		if _, dup := header[t.Name]; dup || t.Name == "" {
			return fmt.Errorf("safetensors: empty or duplicate tensor name %q", t.Name)
		}
		count := 1
		for _, d := range t.Shape {
			count *= d
		}
		dtype, size, have := "F32", int64(4), len(t.Data)
		switch {
		case t.Int8 != nil:
			dtype, size, have = "I8", 1, len(t.Int8)
			if t.Data != nil || t.Half || t.U8 != nil {
				return fmt.Errorf("safetensors: tensor %q has both float and int8 data", t.Name)
			}
		case t.U8 != nil:
			dtype, size, have = "U8", 1, len(t.U8)
			if t.Data != nil || t.Half {
				return fmt.Errorf("safetensors: tensor %q has both float and uint8 data", t.Name)
			}
		case t.Half:
			dtype, size = "F16", 2
			for i, v := range t.Data {
				if r := RoundF16(v); math.IsInf(float64(r), 0) && !math.IsInf(float64(v), 0) {
					return fmt.Errorf("safetensors: tensor %q value %v at index %d is beyond float16's range (±%d); store it as F32", t.Name, v, i, MaxF16)
				}
			}
		}
		if count != have {
			return fmt.Errorf("safetensors: tensor %q has shape %v but %d values", t.Name, t.Shape, have)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[t.Name] = entry{DType: dtype, Shape: shape, Offsets: [2]int64{off, off + size*int64(count)}}
		off += size * int64(count)
	}
	h, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("safetensors: encoding header: %w", err)
	}
	// Pad the header with spaces to 8 bytes so the data is aligned, as the
	// reference implementation does.
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	buf := make([]byte, 8, 8+len(h)+int(off))
	binary.LittleEndian.PutUint64(buf, uint64(len(h)))
	buf = append(buf, h...)
	for _, t := range f.Tensors {
		for _, v := range t.Data {
			if t.Half {
				buf = binary.LittleEndian.AppendUint16(buf, float16.Fromfloat32(v).Bits())
			} else {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			}
		}
		for _, v := range t.Int8 {
			buf = append(buf, byte(v))
		}
		buf = append(buf, t.U8...)
	}
	_, err = w.Write(buf)
	return err
}

// WriteFile writes f to path atomically (see internal/atomicfile), so a
// crash never leaves a half-written model under the final name; the file's
// mode is 0666 less the umask, as os.Create would make it.
func WriteFile(path string, f *File) error {
	if err := atomicfile.Write(path, func(w io.Writer) error { return Encode(w, f) }); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

// MaxFile bounds the files ReadFile reads: far above any model or
// training checkpoint of ours (a few MB), far below what would exhaust
// memory by accident.
const MaxFile = 1 << 30

// ReadFile reads and decodes the safetensors file at path, which must be a
// regular file of at most MaxFile bytes (see package safefile).
func ReadFile(path string) (*File, error) {
	data, err := safefile.ReadFile(context.Background(), path, MaxFile)
	if err != nil {
		return nil, err
	}
	f, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}
