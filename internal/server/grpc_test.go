package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/oipgrpc/pb"
)

// grpcClient dials ts's gRPC service.
func grpcClient(t testing.TB, ts *testServer) (pb.GRPCInferenceServiceClient, *grpc.ClientConn) {
	t.Helper()
	conn, err := grpc.NewClient(ts.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewGRPCInferenceServiceClient(conn), conn
}

// uint8Infer is a typed-contents UINT8 request for imgs.
func uint8Infer(model string, imgs [][]uint8) *pb.ModelInferRequest {
	var v []uint32
	for _, im := range imgs {
		for _, p := range im {
			v = append(v, uint32(p))
		}
	}
	return &pb.ModelInferRequest{ModelName: model, Id: "t1", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: v2InputUINT8, Datatype: "UINT8", Shape: []int64{int64(len(imgs)), modelfile.Side, modelfile.Side},
		Contents: &pb.InferTensorContents{UintContents: v},
	}}}
}

func TestGRPCInfer(t *testing.T) {
	ts := startServer(t, Config{}, newFake())
	c, conn := grpcClient(t, ts)
	ctx := context.Background()
	if r, err := c.ServerLive(ctx, &pb.ServerLiveRequest{}); err != nil || !r.Live {
		t.Fatalf("ServerLive: %v %v", r, err)
	}
	if r, err := c.ServerReady(ctx, &pb.ServerReadyRequest{}); err != nil || !r.Ready {
		t.Fatalf("ServerReady: %v %v", r, err)
	}
	if r, err := c.ModelReady(ctx, &pb.ModelReadyRequest{Name: "fashion-mnist"}); err != nil || !r.Ready {
		t.Errorf("ModelReady: %v %v", r, err)
	}
	md, err := c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "fashion-mnist"})
	if err != nil || md.Platform != v2Platform || fmt.Sprint(md.Versions) != "[1]" || len(md.Inputs) != 2 || fmt.Sprint(md.Outputs[0].Shape) != "[-1 10]" {
		t.Errorf("ModelMetadata: %v %v", md, err)
	}
	h, err := grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil || h.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Errorf("health: %v %v", h, err)
	}

	_, dark := testImage(t, 20)
	_, bright := testImage(t, 230)
	res, err := c.ModelInfer(ctx, uint8Infer("fashion-mnist", [][]uint8{dark, bright}))
	if err != nil {
		t.Fatal(err)
	}
	probs := res.Outputs[0].Contents.Fp32Contents
	if res.ModelVersion != "1" || res.Id != "t1" || len(probs) != 20 ||
		eval.Argmax(probs[:10]) != expectedClass(dark) || eval.Argmax(probs[10:]) != expectedClass(bright) {
		t.Errorf("typed UINT8: %v", res)
	}

	// Raw FP32 contents, answered raw.
	x := make([]float32, modelfile.Pixels)
	newFake().info.Normalize(x, bright)
	raw := &pb.ModelInferRequest{ModelName: "fashion-mnist", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: v2InputFP32, Datatype: "FP32", Shape: []int64{1, 1, modelfile.Side, modelfile.Side}}},
		RawInputContents: [][]byte{encodeFP32LE(x)}}
	res, err = c.ModelInfer(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RawOutputContents) != 1 || len(res.RawOutputContents[0]) != 40 {
		t.Fatalf("raw FP32: %v", res)
	}
	out := make([]float32, 10)
	if err := decodeFP32LE(out, res.RawOutputContents[0]); err != nil || eval.Argmax(out) != expectedClass(bright) {
		t.Errorf("raw output %v %v", out, err)
	}

	// Bad requests are InvalidArgument; unknown models NotFound.
	for name, tc := range map[string]struct {
		req  *pb.ModelInferRequest
		code codes.Code
	}{
		"unknown model": {uint8Infer("nosuch", [][]uint8{dark}), codes.NotFound},
		"unknown version": {func() *pb.ModelInferRequest {
			r := uint8Infer("fashion-mnist", [][]uint8{dark})
			r.ModelVersion = "9"
			return r
		}(), codes.NotFound},
		"short contents": {func() *pb.ModelInferRequest {
			r := uint8Infer("fashion-mnist", [][]uint8{dark})
			r.Inputs[0].Shape[0] = 2
			return r
		}(), codes.InvalidArgument},
		"pixel over 255": {func() *pb.ModelInferRequest {
			r := uint8Infer("fashion-mnist", [][]uint8{dark})
			r.Inputs[0].Contents.UintContents[5] = 256
			return r
		}(), codes.InvalidArgument},
		"too many images": {uint8Infer("fashion-mnist", make([][]uint8, 300)), codes.InvalidArgument},
		"wrong datatype": {func() *pb.ModelInferRequest {
			r := uint8Infer("fashion-mnist", [][]uint8{dark})
			r.Inputs[0].Datatype = "INT64"
			return r
		}(), codes.InvalidArgument},
		"no inputs": {&pb.ModelInferRequest{ModelName: "fashion-mnist"}, codes.InvalidArgument},
		"NaN": {&pb.ModelInferRequest{ModelName: "fashion-mnist", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
			Name: v2InputFP32, Datatype: "FP32", Shape: []int64{1, 28, 28}}}, RawInputContents: [][]byte{encodeFP32LE(append(make([]float32, modelfile.Pixels-1), float32(nan())))}}, codes.InvalidArgument},
	} {
		if _, err := c.ModelInfer(ctx, tc.req); status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %v", name, err, tc.code)
		}
	}
	// Messages beyond MaxBody are refused by the transport.
	big := &pb.ModelInferRequest{ModelName: "fashion-mnist", RawInputContents: [][]byte{make([]byte, 11<<20)}}
	if _, err := c.ModelInfer(ctx, big); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("11 MB message: %v, want ResourceExhausted", err)
	}
}

func nan() float64 { var z float64; return z / z }

// heldInfer starts a server on a fake whose forward passes wait for the
// returned gate, sends one ModelInfer and returns once its forward pass has
// begun, with the channel its result arrives on.
func heldInfer(t *testing.T, cfg Config) (*testServer, pb.GRPCInferenceServiceClient, chan struct{}, <-chan error) {
	t.Helper()
	fake := newFake()
	fake.started = make(chan int, 1)
	fake.gate = make(chan struct{})
	ts := startServer(t, cfg, fake)
	c, _ := grpcClient(t, ts)
	_, img := testImage(t, 100)
	errc := make(chan error, 1)
	go func() {
		_, err := c.ModelInfer(context.Background(), uint8Infer("fashion-mnist", [][]uint8{img}))
		errc <- err
	}()
	<-fake.started
	return ts, c, fake.gate, errc
}

// TestGRPCAdmission checks ModelInfer passes the same admission control as
// REST: with MaxInFlight requests in flight, the next is Unavailable at once.
func TestGRPCAdmission(t *testing.T) {
	_, c, gate, errc := heldInfer(t, Config{MaxInFlight: 1})
	_, img := testImage(t, 100)
	if _, err := c.ModelInfer(context.Background(), uint8Infer("fashion-mnist", [][]uint8{img})); status.Code(err) != codes.Unavailable {
		t.Errorf("second call over MaxInFlight 1: %v, want Unavailable", err)
	}
	close(gate)
	if err := <-errc; err != nil {
		t.Errorf("admitted call: %v", err)
	}
}

func TestGRPCAuth(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	const tok = "grpc-token-0123456789abcdef"
	writeTokens(t, file, tok)
	ts := startServer(t, Config{AuthTokenFile: file}, newFake())
	c, conn := grpcClient(t, ts)
	_, img := testImage(t, 100)
	with := func(v string) context.Context {
		if v == "" {
			return context.Background()
		}
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", v)
	}
	for _, auth := range []string{"", "Bearer wrong-token-0123456789", tok} {
		if _, err := c.ModelInfer(with(auth), uint8Infer("fashion-mnist", [][]uint8{img})); status.Code(err) != codes.Unauthenticated {
			t.Errorf("ModelInfer with %q: %v, want Unauthenticated", auth, err)
		}
		if _, err := c.ModelMetadata(with(auth), &pb.ModelMetadataRequest{Name: "fashion-mnist"}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("ModelMetadata with %q: %v, want Unauthenticated", auth, err)
		}
	}
	if _, err := c.ModelInfer(with("Bearer "+tok), uint8Infer("fashion-mnist", [][]uint8{img})); err != nil {
		t.Errorf("right token: %v", err)
	}
	// Health and readiness stay open.
	if r, err := c.ServerReady(context.Background(), &pb.ServerReadyRequest{}); err != nil || !r.Ready {
		t.Errorf("ServerReady without a token: %v %v", r, err)
	}
	if _, err := c.ServerLive(context.Background(), &pb.ServerLiveRequest{}); err != nil {
		t.Errorf("ServerLive without a token: %v", err)
	}
	if _, err := grpc_health_v1.NewHealthClient(conn).Check(context.Background(), &grpc_health_v1.HealthCheckRequest{}); err != nil {
		t.Errorf("health without a token: %v", err)
	}
}

// TestGRPCGracefulStop checks a call in flight when shutdown begins still
// gets its answer.
func TestGRPCGracefulStop(t *testing.T) {
	ts, _, gate, errc := heldInfer(t, Config{})
	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop(t) }()
	time.Sleep(50 * time.Millisecond)
	close(gate)
	if err := <-errc; err != nil {
		t.Errorf("call in flight at shutdown: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// protoDir is the directory of the official proto for grpcurl: the
// committed copy, checked identical to ../shared's when that is present.
func protoDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "oipgrpc", "pb")
	ours, err := os.ReadFile(filepath.Join(dir, "open_inference_grpc.proto"))
	if err != nil {
		t.Fatal(err)
	}
	if path, ok := datatest.LookupShared("protocols/oip/open_inference_grpc.proto"); ok {
		official, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(official) != string(ours) {
			t.Fatal("internal/oipgrpc/pb/open_inference_grpc.proto differs from the official copy in ../shared/protocols/oip")
		}
	}
	return dir
}

// grpcurl runs the grpcurl client against addr with the official proto.
func grpcurl(t *testing.T, addr, method, body string, headers ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("grpcurl")
	if err != nil {
		if p := filepath.Join(os.Getenv("HOME"), "go", "bin", "grpcurl"); fileExists(p) {
			bin = p
		} else if os.Getenv("CI") == "true" {
			t.Fatal("grpcurl not installed; .ci/run installs it with go install github.com/fullstorydev/grpcurl/cmd/grpcurl")
		} else {
			t.Skip("skipping: grpcurl not installed (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest)")
		}
	}
	args := []string{"-plaintext", "-import-path", protoDir(t), "-proto", "open_inference_grpc.proto", "-max-time", "30"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	if body != "" {
		args = append(args, "-d", "@")
	}
	args = append(args, addr, "inference.GRPCInferenceService/"+method)
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestGRPCurl talks to the real embedded model with grpcurl, an
// independent client reading the official proto: liveness, readiness,
// metadata, and ModelInfer of four test images with the right classes, in
// typed and raw contents; a token is needed when configured.
func TestGRPCurl(t *testing.T) {
	clf, err := modelfile.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	imgs, labels := testSet(t, 4)
	file := filepath.Join(t.TempDir(), "tokens")
	const tok = "grpcurl-token-0123456789abcdef"
	writeTokens(t, file, tok)
	ts := startServer(t, Config{AuthTokenFile: file}, clf)
	auth := "authorization: Bearer " + tok

	for method, want := range map[string]string{"ServerLive": `"live": true`, "ServerReady": `"ready": true`} {
		out, err := grpcurl(t, ts.grpcAddr, method, "")
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("%s: %v: %s", method, err, out)
		}
	}
	out, err := grpcurl(t, ts.grpcAddr, "ModelMetadata", `{"name":"fashion-mnist"}`, auth)
	if err != nil || !strings.Contains(out, `"platform": "fashion-go"`) || !strings.Contains(out, `"input_uint8"`) {
		t.Errorf("ModelMetadata: %v: %s", err, out)
	}
	if out, err := grpcurl(t, ts.grpcAddr, "ModelMetadata", `{"name":"fashion-mnist"}`); err == nil || !strings.Contains(out, "Unauthenticated") {
		t.Errorf("ModelMetadata without a token: %v: %s", err, out)
	}

	var pix []int
	var raw []byte
	for _, im := range imgs {
		raw = append(raw, im...)
		for _, p := range im {
			pix = append(pix, int(p))
		}
	}
	typed, _ := json.Marshal(map[string]any{"model_name": "fashion-mnist", "inputs": []any{map[string]any{
		"name": "input_uint8", "datatype": "UINT8", "shape": []int{4, 28, 28}, "contents": map[string]any{"uint_contents": pix}}}})
	out, err = grpcurl(t, ts.grpcAddr, "ModelInfer", string(typed), auth)
	if err != nil {
		t.Fatalf("ModelInfer: %v: %s", err, out)
	}
	var res struct {
		ModelVersion string `json:"modelVersion"`
		Outputs      []struct {
			Shape    []string `json:"shape"`
			Contents struct {
				Fp32Contents []float32 `json:"fp32Contents"`
			} `json:"contents"`
		} `json:"outputs"`
		RawOutputContents [][]byte `json:"rawOutputContents"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("grpcurl output: %v: %s", err, out)
	}
	var cls []int
	for i := range 4 {
		cls = append(cls, eval.Argmax(res.Outputs[0].Contents.Fp32Contents[i*10:(i+1)*10]))
	}
	if fmt.Sprint(cls) != fmt.Sprint(labels) || res.ModelVersion != "1" {
		t.Errorf("typed ModelInfer: classes %v, want %v (version %q)", cls, labels, res.ModelVersion)
	}

	rawReq, _ := json.Marshal(map[string]any{"model_name": "fashion-mnist", "inputs": []any{map[string]any{
		"name": "input_uint8", "datatype": "UINT8", "shape": []int{4, 28, 28}}}, "raw_input_contents": [][]byte{raw}})
	out, err = grpcurl(t, ts.grpcAddr, "ModelInfer", string(rawReq), auth)
	if err != nil {
		t.Fatalf("raw ModelInfer: %v: %s", err, out)
	}
	res.RawOutputContents = nil
	// Probabilities, then the embedded model's out-of-distribution score
	// (4 FP32 values) and verdict (4 BOOL bytes; test images: all in).
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.RawOutputContents) != 3 || len(res.RawOutputContents[1]) != 4*4 || string(res.RawOutputContents[2]) != "\x01\x01\x01\x01" {
		t.Fatalf("raw grpcurl output: %v: %s", err, out)
	}
	probs := make([]float32, 40)
	if err := decodeFP32LE(probs, res.RawOutputContents[0]); err != nil {
		t.Fatal(err)
	}
	cls = cls[:0]
	for i := range 4 {
		cls = append(cls, eval.Argmax(probs[i*10:(i+1)*10]))
	}
	if fmt.Sprint(cls) != fmt.Sprint(labels) {
		t.Errorf("raw ModelInfer: classes %v, want %v", cls, labels)
	}
	if out, err := grpcurl(t, ts.grpcAddr, "ModelInfer", strings.Replace(string(typed), "fashion-mnist", "nosuch", 1), auth); err == nil || !strings.Contains(out, "NotFound") {
		t.Errorf("unknown model: %v: %s", err, out)
	}
}
