package safetensors

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"
)

// refHalf is the value of the IEEE 754 binary16 bit pattern h, computed
// the plain way from the definition: sign, 5 exponent bits (bias 15), 10
// fraction bits; exponent 0 is zero or subnormal (fraction·2⁻²⁴),
// exponent 31 infinity or NaN.
func refHalf(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, frac := int(h>>10&0x1f), float64(h&0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 31:
		if frac == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1024+frac, exp-25)
}

// rawF16File is a safetensors file holding one F16 tensor "h" of the given
// bit patterns, built byte by byte without Encode.
func rawF16File(bits []uint16) []byte {
	h := fmt.Sprintf(`{"h":{"dtype":"F16","shape":[%d],"data_offsets":[0,%d]}}`, len(bits), 2*len(bits))
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	b = append(b, h...)
	for _, v := range bits {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return b
}

// f16Data returns the data bytes of the only tensor of an encoded file as
// 16-bit patterns.
func f16Data(t *testing.T, file []byte) []uint16 {
	t.Helper()
	n := binary.LittleEndian.Uint64(file)
	body := file[8+n:]
	out := make([]uint16, len(body)/2)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(body[2*i:])
	}
	return out
}

// TestF16AllValues decodes every one of the 65,536 half-precision bit
// patterns and checks each against refHalf, then encodes them again and
// checks that every pattern comes back: bit for bit, except that a
// signalling NaN comes back as a quiet NaN of the same sign and payload.
func TestF16AllValues(t *testing.T) {
	bits := make([]uint16, 1<<16)
	for i := range bits {
		bits[i] = uint16(i)
	}
	f, err := Decode(rawF16File(bits))
	if err != nil {
		t.Fatal(err)
	}
	tn := f.Tensors[0]
	if !tn.Half || len(tn.Data) != len(bits) {
		t.Fatalf("decoded tensor: Half %v, %d values; want Half and %d", tn.Half, len(tn.Data), len(bits))
	}
	bad := 0
	for i, got := range tn.Data {
		want := refHalf(uint16(i))
		ok := float64(got) == want && math.Signbit(float64(got)) == math.Signbit(want)
		if math.IsNaN(want) {
			ok = math.IsNaN(float64(got)) && math.Signbit(float64(got)) == (i&0x8000 != 0)
		}
		if !ok && bad < 10 {
			t.Errorf("F16 %#04x decoded as %v, want %v", i, got, want)
		}
		if !ok {
			bad++
		}
	}
	back := f16Data(t, encode(t, f))
	for i, got := range back {
		want := uint16(i)
		if math.IsNaN(refHalf(want)) {
			want |= 0x0200 // quiet
		}
		if got != want && bad < 10 {
			t.Errorf("F16 %#04x encoded back as %#04x, want %#04x", i, got, want)
		}
		if got != want {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d wrong conversions", bad)
	}
}

// TestF16RoundsToNearestEven encodes, for every pair of neighbouring
// finite halves a < b of either sign, their midpoint (exact in float32)
// and the float32 values just below and above it: the midpoint must go to
// whichever of a and b has an even bit pattern, the others to the nearer.
func TestF16RoundsToNearestEven(t *testing.T) {
	var in []float32
	var want []uint16
	for h := uint16(0); h < 0x7bff; h++ { // 0x7bff is 65504, the largest finite half
		for _, sign := range []uint16{0, 0x8000} {
			a, b := refHalf(h|sign), refHalf((h+1)|sign)
			m := float32((a + b) / 2)
			if float64(m) != (a+b)/2 {
				t.Fatalf("midpoint of %#04x and its successor is not a float32", h)
			}
			even := h | sign
			if h&1 == 1 {
				even = (h + 1) | sign
			}
			in = append(in, m, math.Nextafter32(m, float32(a)), math.Nextafter32(m, float32(b)))
			want = append(want, even, h|sign, (h+1)|sign)
		}
	}
	got := f16Data(t, encode(t, &File{Tensors: []Tensor{{Name: "m", Shape: []int{len(in)}, Data: in, Half: true}}}))
	bad := 0
	for i := range in {
		if got[i] != want[i] {
			if bad < 10 {
				t.Errorf("%v (%#08x) encoded as F16 %#04x, want %#04x", in[i], math.Float32bits(in[i]), got[i], want[i])
			}
			bad++
		}
		if r := RoundF16(in[i]); float64(r) != refHalf(want[i]) {
			t.Fatalf("RoundF16(%v) = %v, want %v (what Encode stores)", in[i], r, refHalf(want[i]))
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d values rounded wrongly", bad, len(in))
	}
}

func TestF16Encode(t *testing.T) {
	inf := float32(math.Inf(1))
	tests := []struct {
		name    string
		in      float32
		want    uint16
		wantErr string
	}{
		{"one", 1, 0x3c00, ""},
		{"minus two", -2, 0xc000, ""},
		{"largest finite", MaxF16, 0x7bff, ""},
		{"just below the overflow midpoint rounds down", math.Nextafter32(65520, 0), 0x7bff, ""},
		{"overflow midpoint refused", 65520, 0, "beyond float16's range"},
		{"large negative refused", -1e6, 0, "beyond float16's range"},
		{"float32 max refused", math.MaxFloat32, 0, "beyond float16's range"},
		{"infinity kept", inf, 0x7c00, ""},
		{"minus infinity kept", -inf, 0xfc00, ""},
		{"NaN kept", float32(math.NaN()), 0x7e00, ""},
		{"smallest subnormal", 0x1p-24, 0x0001, ""},
		{"largest subnormal", 1023 * 0x1p-24, 0x03ff, ""},
		{"smallest normal", 0x1p-14, 0x0400, ""},
		{"half of the smallest subnormal: ties to even zero", 0x1p-25, 0x0000, ""},
		{"just above it rounds up", math.Nextafter32(0x1p-25, 1), 0x0001, ""},
		{"underflow to zero", 1e-30, 0x0000, ""},
		{"underflow keeps the sign", -1e-30, 0x8000, ""},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000, ""},
		{"0.1 to nearest", 0.1, 0x2e66, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			err := Encode(&b, &File{Tensors: []Tensor{{Name: "x", Shape: []int{1}, Data: []float32{tc.in}, Half: true}}})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), `"x"`) {
					t.Fatalf("Encode(%v) error %v, want one naming the tensor and containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := f16Data(t, b.Bytes())[0]; got != tc.want {
				t.Errorf("Encode(%v) stored %#04x, want %#04x", tc.in, got, tc.want)
			}
		})
	}
}

// TestF16Mixed: a file may mix F32, F16 and I8 tensors; each keeps its
// dtype through a round trip, and F16 halves the bytes.
func TestF16Mixed(t *testing.T) {
	f := sample()
	f.Tensors = append(f.Tensors, Tensor{Name: "h.weight", Shape: []int{2, 2}, Data: []float32{0.5, -0.25, 1024, 3}, Half: true})
	data := encode(t, f)
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range f.Tensors {
		g, ok := got.Lookup(want.Name)
		if !ok || g.Half != want.Half || fmt.Sprint(g.Data, g.Int8) != fmt.Sprint(want.Data, want.Int8) {
			t.Errorf("tensor %q came back as %+v, want %+v", want.Name, g, want)
		}
	}
	n := binary.LittleEndian.Uint64(data)
	if !strings.Contains(string(data[8:8+n]), `"h.weight":{"dtype":"F16","shape":[2,2],"data_offsets":[`) {
		t.Errorf("header does not name h.weight F16: %s", data[8:8+n])
	}
	f.Tensors[len(f.Tensors)-1].Half = false
	if d := len(encode(t, f)) - len(data); d != 8 {
		t.Errorf("four values in F32 take %d more bytes than in F16, want 8", d)
	}
}

// TestF16DecodeRejects: hostile or damaged F16 entries are refused with
// a clear error before any value is converted.
func TestF16DecodeRejects(t *testing.T) {
	body := make([]byte, 16)
	file := func(h string) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
		return append(append(b, h...), body...)
	}
	tests := []struct{ name, header, want string }{
		{"odd byte count", `{"h":{"dtype":"F16","shape":[3],"data_offsets":[0,5]}}`, "needs 6 bytes, header gives 5"},
		{"F32-sized range", `{"h":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}}`, "needs 8 bytes, header gives 16"},
		{"shape larger than the data", `{"h":{"dtype":"F16","shape":[9],"data_offsets":[0,18]}}`, "outside the 16 data bytes"},
		{"end past the data", `{"h":{"dtype":"F16","shape":[2],"data_offsets":[14,18]}}`, "outside"},
		{"negative offset", `{"h":{"dtype":"F16","shape":[2],"data_offsets":[-4,0]}}`, "outside"},
		{"reversed offsets", `{"h":{"dtype":"F16","shape":[0],"data_offsets":[8,4]}}`, "outside"},
		{"overflowing shape", `{"h":{"dtype":"F16","shape":[65536,65536],"data_offsets":[0,16]}}`, "invalid shape"},
		{"overlapping tensors", `{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[4],"data_offsets":[6,14]}}`, "overlap"},
		{"overlapping an F32 tensor", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[2],"data_offsets":[4,8]}}`, "overlap"},
		{"lower-case dtype", `{"h":{"dtype":"f16","shape":[2],"data_offsets":[0,4]}}`, "only F32, F16, I8 and U8"},
		{"bfloat16", `{"h":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}`, "only F32, F16, I8 and U8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(file(tc.header))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := Decode(rawF16File([]uint16{0x3c00, 0x7c00, 0x7e00})); err != nil {
		t.Errorf("F16 infinity and NaN are values the format holds; refusing them is the model file's job: %v", err)
	}
}
