package onnx

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"

	"github.com/fashion-classifier/fashion/internal/onnx/onnxpb"
)

// maxElems bounds the number of values of any one tensor, constant or per
// image, so that a damaged or hostile file cannot make the loader allocate
// without limit.
const maxElems = 1 << 27

// constant is a tensor whose value is known at load time: a weight, an ONNX
// Constant, or the result of folding shape arithmetic.
//
// Integer tensors may contain the batch size, which is only known when the
// model runs: Shape of a batch of images yields [batch, C, H, W]. Such
// entries are flagged in batch and may be moved around (Gather, Concat,
// Unsqueeze) and finally consumed by Reshape, but not computed with.
type constant struct {
	// name is the initializer's name when the constant is one, unchanged.
	name  string
	dims  []int
	isInt bool
	f     []float32
	i     []int64
	batch []bool // nil, or one flag per entry of i
}

func (c *constant) size() int {
	if c.isInt {
		return len(c.i)
	}
	return len(c.f)
}

// hasBatch reports whether any entry stands for the batch size.
func (c *constant) hasBatch() bool {
	for _, b := range c.batch {
		if b {
			return true
		}
	}
	return false
}

// floats returns the values as float32, converting integers.
func (c *constant) floats() []float32 {
	if !c.isInt {
		return c.f
	}
	f := make([]float32, len(c.i))
	for k, v := range c.i {
		f[k] = float32(v)
	}
	return f
}

// ints returns the values as int64, truncating floats.
func (c *constant) ints() []int64 {
	if c.isInt {
		return c.i
	}
	out := make([]int64, len(c.f))
	for k, v := range c.f {
		out[k] = int64(v)
	}
	return out
}

// batchAt reports whether entry k stands for the batch size.
func (c *constant) batchAt(k int) bool { return c.batch != nil && c.batch[k] }

// numel returns the number of values of a tensor with the given dims, or an
// error if a dim is negative or the count exceeds maxElems.
func numel(dims []int) (int, error) {
	n := 1
	for _, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", dims)
		}
		if d > 0 && n > maxElems/d {
			return 0, fmt.Errorf("shape %v has more than %d values", dims, maxElems)
		}
		n *= d
	}
	return n, nil
}

// toInts converts int64 dims from the file to int, rejecting values that
// are negative or too large to describe a tensor we would allocate.
func toInts(dims []int64) ([]int, error) {
	out := make([]int, len(dims))
	for k, d := range dims {
		if d < 0 || d > maxElems {
			return nil, fmt.Errorf("dimension %d out of range in %v", d, dims)
		}
		out[k] = int(d)
	}
	if _, err := numel(out); err != nil {
		return nil, err
	}
	return out, nil
}

// decodeTensor converts a TensorProto into a constant, reading its values
// from raw_data or from the typed repeated field.
func decodeTensor(t *onnxpb.TensorProto) (*constant, error) {
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		return nil, fmt.Errorf("tensor %q keeps its data in an external file, which is not supported (export the model with its weights inside)", t.GetName())
	}
	if t.GetSegment() != nil {
		return nil, fmt.Errorf("tensor %q is segmented, which is not supported", t.GetName())
	}
	dims, err := toInts(t.GetDims())
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	n, _ := numel(dims)
	raw := t.GetRawData()
	hasRaw := t.RawData != nil
	dt := onnxpb.TensorProto_DataType(t.GetDataType())
	c := &constant{dims: dims}
	// width is the size in bytes of one value in raw_data.
	width := map[onnxpb.TensorProto_DataType]int{
		onnxpb.TensorProto_FLOAT: 4, onnxpb.TensorProto_DOUBLE: 8, onnxpb.TensorProto_FLOAT16: 2,
		onnxpb.TensorProto_INT64: 8, onnxpb.TensorProto_INT32: 4, onnxpb.TensorProto_INT16: 2,
		onnxpb.TensorProto_INT8: 1, onnxpb.TensorProto_UINT8: 1, onnxpb.TensorProto_BOOL: 1,
	}[dt]
	if width == 0 {
		return nil, fmt.Errorf("tensor %q has data type %v, which is not supported", t.GetName(), dt)
	}
	var count int
	if hasRaw {
		count = len(raw) / width
		if len(raw) != n*width {
			return nil, fmt.Errorf("tensor %q of shape %v and type %v needs %d bytes of raw data, has %d", t.GetName(), dims, dt, n*width, len(raw))
		}
	}
	switch dt {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_DOUBLE, onnxpb.TensorProto_FLOAT16:
		c.f = make([]float32, n)
		switch {
		case hasRaw && dt == onnxpb.TensorProto_FLOAT:
			for k := range count {
				c.f[k] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*k:]))
			}
		case hasRaw && dt == onnxpb.TensorProto_DOUBLE:
			for k := range count {
				c.f[k] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*k:])))
			}
		case hasRaw:
			for k := range count {
				c.f[k] = float16.Frombits(binary.LittleEndian.Uint16(raw[2*k:])).Float32()
			}
		case dt == onnxpb.TensorProto_FLOAT:
			if err := sameLen(t, len(t.GetFloatData()), n); err != nil {
				return nil, err
			}
			copy(c.f, t.GetFloatData())
		case dt == onnxpb.TensorProto_DOUBLE:
			if err := sameLen(t, len(t.GetDoubleData()), n); err != nil {
				return nil, err
			}
			for k, v := range t.GetDoubleData() {
				c.f[k] = float32(v)
			}
		default:
			if err := sameLen(t, len(t.GetInt32Data()), n); err != nil {
				return nil, err
			}
			for k, v := range t.GetInt32Data() {
				c.f[k] = float16.Frombits(uint16(v)).Float32()
			}
		}
	default:
		c.isInt = true
		c.i = make([]int64, n)
		switch {
		case hasRaw:
			for k := range count {
				b := raw[k*width:]
				switch dt {
				case onnxpb.TensorProto_INT64:
					c.i[k] = int64(binary.LittleEndian.Uint64(b))
				case onnxpb.TensorProto_INT32:
					c.i[k] = int64(int32(binary.LittleEndian.Uint32(b)))
				case onnxpb.TensorProto_INT16:
					c.i[k] = int64(int16(binary.LittleEndian.Uint16(b)))
				case onnxpb.TensorProto_INT8:
					c.i[k] = int64(int8(b[0]))
				default: // UINT8, BOOL
					c.i[k] = int64(b[0])
				}
			}
		case dt == onnxpb.TensorProto_INT64:
			if err := sameLen(t, len(t.GetInt64Data()), n); err != nil {
				return nil, err
			}
			copy(c.i, t.GetInt64Data())
		default:
			if err := sameLen(t, len(t.GetInt32Data()), n); err != nil {
				return nil, err
			}
			for k, v := range t.GetInt32Data() {
				c.i[k] = int64(v)
			}
		}
	}
	return c, nil
}

// droppedTensor is the constant of an initializer an int8 file left out:
// zeros of its shape, which must be FLOAT with no values stored.
func droppedTensor(t *onnxpb.TensorProto) (*constant, error) {
	if onnxpb.TensorProto_DataType(t.GetDataType()) != onnxpb.TensorProto_FLOAT || t.RawData != nil || len(t.GetFloatData()) > 0 {
		return nil, fmt.Errorf("tensor %q, left out by the int8 file, must be FLOAT with no values", t.GetName())
	}
	dims, err := toInts(t.GetDims())
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	n, _ := numel(dims)
	return &constant{dims: dims, f: make([]float32, n)}, nil
}

func sameLen(t *onnxpb.TensorProto, got, want int) error {
	if got != want {
		return fmt.Errorf("tensor %q of shape %v has %d values, want %d", t.GetName(), t.GetDims(), got, want)
	}
	return nil
}

// broadcastDims returns the NumPy-style broadcast of two shapes.
func broadcastDims(a, b []int) ([]int, error) {
	r := max(len(a), len(b))
	out := make([]int, r)
	for k := range r {
		da, db := 1, 1
		if j := k - (r - len(a)); j >= 0 {
			da = a[j]
		}
		if j := k - (r - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da == db, db == 1:
			out[k] = da
		case da == 1:
			out[k] = db
		default:
			return nil, fmt.Errorf("shapes %v and %v do not broadcast", a, b)
		}
	}
	return out, nil
}

// broadcastStrides returns, for each axis of out, the stride of a
// row-major tensor of shape in aligned to the right of out, with 0 on
// axes where in is broadcast.
func broadcastStrides(in, out []int) []int {
	st := make([]int, len(out))
	s := 1
	for k := len(in) - 1; k >= 0; k-- {
		j := k + len(out) - len(in)
		if in[k] != 1 {
			st[j] = s
		}
		s *= in[k]
	}
	return st
}

// forEachBroadcast calls fn with the offsets into a and b (row-major, of
// shapes da and db) of each element of their broadcast shape out, in order.
func forEachBroadcast(out, da, db []int, fn func(ia, ib int)) {
	sa, sb := broadcastStrides(da, out), broadcastStrides(db, out)
	total, _ := numel(out)
	idx := make([]int, len(out))
	ia, ib := 0, 0
	for range total {
		fn(ia, ib)
		for k := len(out) - 1; k >= 0; k-- {
			idx[k]++
			ia += sa[k]
			ib += sb[k]
			if idx[k] < out[k] {
				break
			}
			ia -= sa[k] * out[k]
			ib -= sb[k] * out[k]
			idx[k] = 0
		}
	}
}

// expandTo broadcasts c to the shape out (which c must broadcast to
// without growing out) and returns the values in row-major order.
func expandTo(c *constant, out []int) ([]float32, error) {
	b, err := broadcastDims(out, c.dims)
	if err != nil || fmt.Sprint(b) != fmt.Sprint(out) {
		return nil, fmt.Errorf("constant of shape %v does not broadcast to %v", c.dims, out)
	}
	src := c.floats()
	n, err := numel(out)
	if err != nil {
		return nil, err
	}
	dst := make([]float32, 0, n)
	forEachBroadcast(out, out, c.dims, func(_, ib int) { dst = append(dst, src[ib]) })
	return dst, nil
}

// normAxis maps a possibly negative axis onto [0, rank).
func normAxis(axis int64, rank int) (int, error) {
	if axis < 0 {
		axis += int64(rank)
	}
	if axis < 0 || axis >= int64(rank) {
		return 0, fmt.Errorf("axis %d out of range for rank %d", axis, rank)
	}
	return int(axis), nil
}
