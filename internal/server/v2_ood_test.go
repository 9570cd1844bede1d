package server

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/oipgrpc/pb"
)

// TestV2InDistribution: for a model with a detector, OIP v2 answers an
// in_distribution BOOL output beside ood_score, agreeing with the
// detector's threshold, over REST (JSON booleans) and gRPC (typed
// bool_contents and raw bytes), and lists it in the model metadata.
func TestV2InDistribution(t *testing.T) {
	ts := startServer(t, Config{}, oodFake{newFake()})
	_, dark := testImage(t, 200) // first pixel black: in distribution
	light := make([]uint8, modelfile.Pixels)
	for i := range light {
		light[i] = 255
	}
	want := []bool{true, false, true}
	imgs := [][]uint8{dark, light, dark}

	r := do(t, "POST", ts.url+"/v2/models/fashion-mnist/infer", "application/json", v2UINT8Body(imgs))
	if r.code != http.StatusOK {
		t.Fatal(r.code, string(r.body))
	}
	resp := decode[V2InferResponse](t, r)
	if len(resp.Outputs) != 3 {
		t.Fatalf("%d outputs, want probabilities, ood_score and in_distribution: %s", len(resp.Outputs), r.body)
	}
	score, in := resp.Outputs[1], resp.Outputs[2]
	if score.Name != v2OODOutput || len(score.Data) != 3 {
		t.Errorf("second output %+v, want 3 ood_score values", score)
	}
	if in.Name != v2InDistOutput || in.Datatype != "BOOL" || !slices.Equal(in.Shape, []int64{3}) || !slices.Equal(in.Bools, want) {
		t.Errorf("third output %+v, want in_distribution BOOL [3] %v", in, want)
	}
	md := decode[V2ModelMetadata](t, do(t, "GET", ts.url+"/v2/models/fashion-mnist", "", nil))
	if len(md.Outputs) != 3 || md.Outputs[2].Name != v2InDistOutput || md.Outputs[2].Datatype != "BOOL" {
		t.Errorf("metadata outputs %+v, want in_distribution BOOL last", md.Outputs)
	}
	// A request may ask for it by name; a misspelt output is refused.
	ask := `{"inputs":[{"name":"input_uint8","datatype":"UINT8","shape":[1,28,28],"data":[` + zeros(modelfile.Pixels) + `]}],"outputs":[{"name":"in_distribution"}]}`
	if r := do(t, "POST", ts.url+"/v2/models/fashion-mnist/infer", "application/json", []byte(ask)); r.code != 200 {
		t.Errorf("asking for in_distribution: status %d: %s", r.code, r.body)
	}
	bad := `{"inputs":[{"name":"input_uint8","datatype":"UINT8","shape":[1,28,28],"data":[` + zeros(modelfile.Pixels) + `]}],"outputs":[{"name":"in_distributon"}]}`
	if r := do(t, "POST", ts.url+"/v2/models/fashion-mnist/infer", "application/json", []byte(bad)); r.code != 400 {
		t.Errorf("asking for a misspelt output: status %d, want 400", r.code)
	}

	c, conn := grpcClient(t, ts)
	defer conn.Close()
	var pix []uint32
	var raw []byte
	for _, im := range imgs {
		raw = append(raw, im...)
		for _, p := range im {
			pix = append(pix, uint32(p))
		}
	}
	typed, err := c.ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: "fashion-mnist", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: v2InputUINT8, Datatype: "UINT8", Shape: []int64{3, 28, 28}, Contents: &pb.InferTensorContents{UintContents: pix}}}})
	if err != nil {
		t.Fatal(err)
	}
	if o := typed.GetOutputs(); len(o) != 3 || o[2].GetName() != v2InDistOutput || o[2].GetDatatype() != "BOOL" || !slices.Equal(o[2].GetContents().GetBoolContents(), want) {
		t.Errorf("gRPC typed outputs %v, want in_distribution %v third", o, want)
	}
	rawResp, err := c.ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: "fashion-mnist",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: v2InputUINT8, Datatype: "UINT8", Shape: []int64{3, 28, 28}}},
		RawInputContents: [][]byte{raw}})
	if err != nil {
		t.Fatal(err)
	}
	if rc := rawResp.GetRawOutputContents(); len(rc) != 3 || string(rc[2]) != "\x01\x00\x01" || rawResp.GetOutputs()[2].GetName() != v2InDistOutput {
		t.Errorf("gRPC raw outputs %q, want in_distribution bytes 1 0 1 third", rc)
	}
}

// zeros is n comma-separated zeros, for JSON tensor data.
func zeros(n int) string {
	b := make([]byte, 0, 2*n)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '0')
	}
	return string(b)
}
