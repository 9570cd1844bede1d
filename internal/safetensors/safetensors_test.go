package safetensors

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func sample() *File {
	return &File{
		Metadata: map[string]string{"arch": "vgg", "seed": "1"},
		Tensors: []Tensor{
			{Name: "conv1.weight", Shape: []int{9, 4}, Data: make([]float32, 36)},
			{Name: "fc.bias", Shape: []int{3}, Data: []float32{1.5, -2, 3.25}},
			{Name: "scalar", Shape: []int{}, Data: []float32{7}},
			{Name: "q.weight", Shape: []int{2, 3}, Int8: []int8{-128, -1, 0, 1, 127, 5}},
			{Name: "graph", Shape: []int{5}, U8: []uint8{0, 1, 128, 254, 255}},
		},
	}
}

func encode(t *testing.T, f *File) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Encode(&b, f); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	f := sample()
	f.Tensors[0].Data[5] = 0.25
	got, err := Decode(encode(t, f))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, f) {
		t.Errorf("round trip changed the file:\n got %+v\nwant %+v", got, f)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "m.safetensors")
	if err := WriteFile(p, f); err != nil {
		t.Fatal(err)
	}
	if back, err := ReadFile(p); err != nil || !reflect.DeepEqual(back, f) {
		t.Errorf("ReadFile: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("WriteFile left %d files, want only the model", len(entries))
	}
}

func TestEncodeRejectsTwoKindsOfData(t *testing.T) {
	for _, x := range []Tensor{
		{Name: "x", Shape: []int{1}, Data: []float32{1}, Int8: []int8{1}},
		{Name: "x", Shape: []int{1}, Int8: []int8{1}, U8: []uint8{1}},
		{Name: "x", Shape: []int{1}, Data: []float32{1}, U8: []uint8{1}},
		{Name: "x", Shape: []int{1}, Half: true, U8: []uint8{1}},
	} {
		f := &File{Tensors: []Tensor{x}}
		if err := Encode(&bytes.Buffer{}, f); err == nil || !strings.Contains(err.Error(), "has both") {
			t.Errorf("tensor with two kinds of data: %v", err)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := encode(t, sample())
	hdrLen := binary.LittleEndian.Uint64(good)
	header := string(good[8 : 8+hdrLen])
	withHeader := func(h string) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
		return append(append(b, h...), good[8+hdrLen:]...)
	}
	flipped := append([]byte(nil), good...)
	flipped[3] = 0x7f
	tests := []struct {
		name, want string
		data       []byte
	}{
		{"empty", "too short", nil},
		{"truncated data", "outside", good[:len(good)-4]},
		{"huge header length", "does not fit", flipped},
		{"not json", "not valid JSON", withHeader("{nope")},
		{"int8 size", "needs 8 bytes, header gives 6", withHeader(strings.Replace(header, `"shape":[2,3]`, `"shape":[2,4]`, 1))},
		{"wrong dtype", "only F32, F16, I8 and U8", withHeader(strings.Replace(header, `"F32"`, `"F64"`, 1))},
		{"shape mismatch", "needs", withHeader(strings.Replace(header, `[9,4]`, `[9,5]`, 1))},
		{"negative dim", "invalid shape", withHeader(strings.Replace(header, `[9,4]`, `[-9,4]`, 1))},
		{"unknown field", "bad header entry", withHeader(strings.Replace(header, `"dtype"`, `"x":1,"dtype"`, 1))},
		{"overlap", "overlap", withHeader(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`)},
		{"bad metadata", "__metadata__", withHeader(`{"__metadata__":{"a":1}}`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	var b bytes.Buffer
	Encode(&b, sample())
	f.Add(b.Bytes())
	f.Add([]byte{})
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"))
	f.Add(rawF16File([]uint16{0x3c00, 0x8001, 0x7c00, 0x7d00}))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Decode(data)
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode to the same tensors.
		var out bytes.Buffer
		if err := Encode(&out, file); err != nil {
			t.Fatalf("decoded file does not encode: %v", err)
		}
		if _, err := Decode(out.Bytes()); err != nil {
			t.Fatalf("re-encoded file does not decode: %v", err)
		}
	})
}
