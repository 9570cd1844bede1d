package onnx

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// FuzzLoad checks that no byte string makes the loader, or a run of what
// it loaded, panic: every damaged model is an error.
func FuzzLoad(f *testing.F) {
	f.Add(tinyGraph().bytes(f))
	if good, err := os.ReadFile(filepath.Join(fixtureDir, "ops13.onnx")); err == nil {
		f.Add(good)
		f.Add(good[:len(good)/3])
	}
	f.Add([]byte{})
	f.Add([]byte("\x08\x07\x12\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, Options{})
		if err != nil {
			return
		}
		if _, err := m.Predict(make([]float32, 2*modelfile.Pixels), 2); err != nil {
			t.Fatalf("loaded model fails to run: %v", err)
		}
	})
}

func TestDecodeTensor(t *testing.T) {
	le32 := func(v ...float32) []byte {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b
	}
	tensor := func(dt onnxpb.TensorProto_DataType, dims []int64, fill func(*onnxpb.TensorProto)) *onnxpb.TensorProto {
		p := &onnxpb.TensorProto{Name: proto.String("t"), Dims: dims, DataType: proto.Int32(int32(dt))}
		fill(p)
		return p
	}
	tests := []struct {
		name    string
		t       *onnxpb.TensorProto
		floats  []float32
		ints    []int64
		wantErr bool
	}{
		{"float raw", tensor(onnxpb.TensorProto_FLOAT, []int64{2}, func(p *onnxpb.TensorProto) { p.RawData = le32(1.5, -2) }), []float32{1.5, -2}, nil, false},
		{"float typed", tensor(onnxpb.TensorProto_FLOAT, []int64{1, 2}, func(p *onnxpb.TensorProto) { p.FloatData = []float32{3, 4} }), []float32{3, 4}, nil, false},
		{"double typed", tensor(onnxpb.TensorProto_DOUBLE, []int64{1}, func(p *onnxpb.TensorProto) { p.DoubleData = []float64{0.25} }), []float32{0.25}, nil, false},
		// binary16: 1.0 = 0x3c00, -2.0 = 0xc000, 65504 = 0x7bff, 2⁻²⁴ = 0x0001.
		{"float16 raw", tensor(onnxpb.TensorProto_FLOAT16, []int64{4}, func(p *onnxpb.TensorProto) {
			p.RawData = []byte{0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00}
		}), []float32{1, -2, 65504, 1.0 / (1 << 24)}, nil, false},
		// -0.5 = 0xb800, smallest normal 2⁻¹⁴ = 0x0400, largest subnormal 1023·2⁻²⁴ = 0x03ff, -2⁻²⁴ = 0x8001.
		{"float16 typed", tensor(onnxpb.TensorProto_FLOAT16, []int64{4}, func(p *onnxpb.TensorProto) {
			p.Int32Data = []int32{0xb800, 0x0400, 0x03ff, 0x8001}
		}), []float32{-0.5, 1.0 / (1 << 14), 1023.0 / (1 << 24), -1.0 / (1 << 24)}, nil, false},
		{"int64 raw", tensor(onnxpb.TensorProto_INT64, []int64{2}, func(p *onnxpb.TensorProto) {
			p.RawData = binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 7), math.MaxUint64)
		}), nil, []int64{7, -1}, false},
		{"int32 typed", tensor(onnxpb.TensorProto_INT32, []int64{2}, func(p *onnxpb.TensorProto) { p.Int32Data = []int32{-3, 9} }), nil, []int64{-3, 9}, false},
		{"scalar", tensor(onnxpb.TensorProto_INT64, nil, func(p *onnxpb.TensorProto) { p.Int64Data = []int64{5} }), nil, []int64{5}, false},
		{"raw too short", tensor(onnxpb.TensorProto_FLOAT, []int64{3}, func(p *onnxpb.TensorProto) { p.RawData = le32(1, 2) }), nil, nil, true},
		{"typed too long", tensor(onnxpb.TensorProto_FLOAT, []int64{1}, func(p *onnxpb.TensorProto) { p.FloatData = []float32{1, 2} }), nil, nil, true},
		{"negative dim", tensor(onnxpb.TensorProto_FLOAT, []int64{-1}, func(p *onnxpb.TensorProto) {}), nil, nil, true},
		{"huge dims", tensor(onnxpb.TensorProto_FLOAT, []int64{1 << 20, 1 << 20}, func(p *onnxpb.TensorProto) {}), nil, nil, true},
		{"string type", tensor(onnxpb.TensorProto_STRING, []int64{1}, func(p *onnxpb.TensorProto) {}), nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := decodeTensor(tt.t)
			if tt.wantErr {
				if err == nil {
					t.Fatal("decoded without error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.floats != nil && (c.isInt || maxDiff(c.f, tt.floats) != 0 || len(c.f) != len(tt.floats)) {
				t.Errorf("got floats %v, want %v", c.f, tt.floats)
			}
			if tt.ints != nil && (!c.isInt || len(c.i) != len(tt.ints)) {
				t.Fatalf("got ints %v, want %v", c.i, tt.ints)
			}
			for k, v := range tt.ints {
				if c.i[k] != v {
					t.Errorf("got ints %v, want %v", c.i, tt.ints)
				}
			}
		})
	}
}
