package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// jsonList writes values as a JSON array, nested as rows of 28 when nested
// is set, to exercise both forms the protocol allows.
func jsonList[T any](vals []T, nested bool) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range vals {
		if nested && i%modelfile.Side == 0 {
			if i > 0 {
				b.WriteString("],")
			}
			b.WriteByte('[')
		} else if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, v)
	}
	if nested && len(vals) > 0 {
		b.WriteByte(']')
	}
	b.WriteByte(']')
	return b.String()
}

func TestV2Infer(t *testing.T) {
	fake := newFake()
	ts := startServer(t, Config{MaxImages: 8}, fake)
	info := fake.Info()
	_, pa := testImage(t, 255)
	_, pb := testImage(t, 100)
	two := append(append([]uint8(nil), pa...), pb...)
	norm := make([]float32, len(two))
	info.Normalize(norm, two)
	want := []int{expectedClass(pa), expectedClass(pb)}

	bin := func(b []byte, fp32 []float32) []byte {
		for _, v := range fp32 {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
		return b
	}
	infer := ts.url + "/v2/models/fashion-mnist/infer"
	tests := []struct {
		name      string
		url       string
		body      string
		binary    []byte // appended after body, with Inference-Header-Content-Length
		code      int
		wantClass []int  // for 200
		errPart   string // for errors
	}{
		{name: "UINT8 flat [2,28,28]", url: infer, code: 200, wantClass: want,
			body: `{"id":"req-1","inputs":[{"name":"input_uint8","shape":[2,28,28],"datatype":"UINT8","data":` + jsonList(two, false) + `}]}`},
		{name: "UINT8 nested [2,1,28,28]", url: infer, code: 200, wantClass: want,
			body: `{"id":"req-1","inputs":[{"name":"input_uint8","shape":[2,1,28,28],"datatype":"UINT8","data":` + jsonList(two, true) + `}]}`},
		{name: "FP32 flat", url: infer, code: 200, wantClass: want,
			body: `{"id":"req-1","inputs":[{"name":"input","shape":[2,1,28,28],"datatype":"FP32","data":` + jsonList(norm, false) + `}],"outputs":[{"name":"probabilities"}]}`},
		{name: "FP32 nested, versioned path", url: ts.url + "/v2/models/fashion-mnist/versions/1/infer", code: 200, wantClass: want,
			body: `{"id":"req-1","inputs":[{"name":"input","shape":[2,1,28,28],"datatype":"FP32","data":` + jsonList(norm, true) + `}]}`},
		{name: "FP32 binary extension", url: infer, code: 200, wantClass: want,
			body:   `{"id":"req-1","inputs":[{"name":"input","shape":[2,1,28,28],"datatype":"FP32","parameters":{"binary_data_size":` + strconv.Itoa(4*len(norm)) + `}}],"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}`,
			binary: bin(nil, norm)},
		{name: "UINT8 binary extension", url: infer, code: 200, wantClass: want,
			body:   `{"id":"req-1","inputs":[{"name":"input_uint8","shape":[2,28,28],"datatype":"UINT8","parameters":{"binary_data_size":` + strconv.Itoa(len(two)) + `}}]}`,
			binary: two},

		{name: "unknown model", url: ts.url + "/v2/models/mnist/infer", code: 404, errPart: "not served",
			body: `{"inputs":[]}`},
		{name: "bad JSON", url: infer, code: 400, errPart: "JSON", body: `{"inputs":`},
		{name: "no inputs", url: infer, code: 400, errPart: "exactly 1", body: `{"inputs":[]}`},
		{name: "wrong shape", url: infer, code: 400, errPart: "shape",
			body: `{"inputs":[{"name":"input","shape":[1,3,28,28],"datatype":"FP32","data":[0]}]}`},
		{name: "too few values", url: infer, code: 400, errPart: "1 values, want 784",
			body: `{"inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"FP32","data":[0]}]}`},
		{name: "too many images", url: infer, code: 400, errPart: "at most 8",
			body: `{"inputs":[{"name":"input","shape":[9,1,28,28],"datatype":"FP32","data":[0]}]}`},
		{name: "UINT8 out of range", url: infer, code: 400, errPart: "0 to 255",
			body: `{"inputs":[{"name":"input_uint8","shape":[1,28,28],"datatype":"UINT8","data":[256]}]}`},
		{name: "string in data", url: infer, code: 400, errPart: "number",
			body: `{"inputs":[{"name":"input","shape":[1,28,28],"datatype":"FP32","data":["a"]}]}`},
		{name: "unsupported datatype", url: infer, code: 400, errPart: "datatype",
			body: `{"inputs":[{"name":"input","shape":[1,28,28],"datatype":"BYTES","data":[1]}]}`},
		{name: "unknown output", url: infer, code: 400, errPart: "unknown output",
			body: `{"inputs":[{"name":"input","shape":[1,28,28],"datatype":"FP32","data":[1]}],"outputs":[{"name":"logits"}]}`},
		{name: "binary size mismatch", url: infer, code: 400, errPart: "binary_data_size",
			body:   `{"inputs":[{"name":"input_uint8","shape":[1,28,28],"datatype":"UINT8","parameters":{"binary_data_size":10}}]}`,
			binary: make([]byte, 784)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", tt.url, bytes.NewReader(append([]byte(tt.body), tt.binary...)))
			if tt.binary != nil {
				req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(len(tt.body)))
				req.Header.Set("Content-Type", "application/octet-stream")
			} else {
				req.Header.Set("Content-Type", "application/json")
			}
			r := send(t, req)
			if r.code != tt.code {
				t.Fatalf("status %d, want %d: %.300s", r.code, tt.code, r.body)
			}
			if tt.code != 200 {
				if e := decode[errorBody](t, r); !strings.Contains(e.Error, tt.errPart) {
					t.Errorf("error %q, want it to mention %q", e.Error, tt.errPart)
				}
				return
			}
			got := decode[V2InferResponse](t, r)
			if got.ID != "req-1" || got.ModelName != "fashion-mnist" || len(got.Outputs) != 1 {
				t.Fatalf("response %+v: want id req-1, model fashion-mnist, one output", got)
			}
			out := got.Outputs[0]
			if out.Name != "probabilities" || out.Datatype != "FP32" || fmt.Sprint(out.Shape) != "[2 10]" || len(out.Data) != 20 {
				t.Fatalf("output %s %s %v with %d values, want probabilities FP32 [2 10]", out.Name, out.Datatype, out.Shape, len(out.Data))
			}
			for i, c := range tt.wantClass {
				if out.Data[i*10+c] != 0.55 {
					t.Errorf("image %d: probabilities %v, want class %d at 0.55", i, out.Data[i*10:i*10+10], c)
				}
			}
		})
	}
}

func TestV2Metadata(t *testing.T) {
	ts := startServer(t, Config{ModelName: "shirts"}, newFake())
	r := do(t, "GET", ts.url+"/v2/models/shirts", "", nil)
	md := decode[V2ModelMetadata](t, r)
	if md.Name != "shirts" || len(md.Inputs) != 2 || len(md.Outputs) != 1 ||
		fmt.Sprint(md.Inputs[0].Shape) != "[-1 1 28 28]" || md.Inputs[1].Datatype != "UINT8" ||
		fmt.Sprint(md.Outputs[0].Shape) != "[-1 10]" {
		t.Errorf("metadata %+v", md)
	}
	var raw map[string]any
	json.Unmarshal(do(t, "GET", ts.url+"/v2", "", nil).body, &raw)
	if raw["name"] == nil || raw["version"] == nil || raw["extensions"] == nil {
		t.Errorf("server metadata %v lacks name, version or extensions", raw)
	}
}
