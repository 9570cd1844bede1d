package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// oipRouter loads the official Open Inference Protocol REST specification
// (testdata/oip) and returns a router over it. Two notational quirks of the
// file are normalised, nothing else: its path parameters are written
// ${NAME} (OpenAPI writes {NAME}), and server metadata is at /v2/ while the
// protocol's text (and every client) uses /v2.
func oipRouter(t *testing.T) routers.Router {
	t.Helper()
	spec, err := os.ReadFile(filepath.Join("testdata", "oip", "open_inference_rest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if path, ok := datatest.LookupShared("protocols/oip/open_inference_rest.yaml"); ok {
		if official, err := os.ReadFile(path); err != nil || !bytes.Equal(official, spec) {
			t.Fatalf("testdata/oip/open_inference_rest.yaml differs from the official copy in ../shared/protocols/oip (%v)", err)
		}
	}
	spec = bytes.ReplaceAll(spec, []byte("${"), []byte("{"))
	spec = bytes.Replace(spec, []byte("\n  /v2/:\n"), []byte("\n  /v2:\n"), 1)
	doc, err := openapi3.NewLoader().LoadFromData(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the specification itself: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: "/"}}
	r, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// conform sends req to ts, checks the request (unless it uses an extension
// the specification does not describe) and the answer against the
// specification, and returns the answer. specPath, if not empty, is the
// path to look the operation up under: the specification lists only the
// versioned form of model paths, which the protocol's text says may omit
// /versions/{v}.
func conform(t *testing.T, router routers.Router, ts *testServer, method, path, specPath string, body []byte, extension bool) response {
	t.Helper()
	if specPath == "" {
		specPath = path
	}
	specReq := httptest.NewRequest(method, specPath, bytes.NewReader(body))
	if body != nil {
		specReq.Header.Set("Content-Type", "application/json")
	}
	route, params, err := router.FindRoute(specReq)
	if err != nil {
		t.Fatalf("%s %s: not in the specification: %v", method, specPath, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: specReq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if !extension {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s %s: our test request does not conform: %v", method, path, err)
		}
	}
	r := do(t, method, ts.url+path, "application/json", body)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: r.code, Header: r.header,
		Body: io.NopCloser(bytes.NewReader(r.body)), Options: &openapi3filter.Options{IncludeResponseStatus: false}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s: answer %d does not conform: %v\n%s", method, path, r.code, err, r.body)
	}
	return r
}

// TestV2ConformsToSpec validates the /v2 REST API against the official
// specification: server and model metadata, readiness, and inference with
// JSON data (FP32 and UINT8, flat and nested), with the answers to bad
// requests (400 with {"error"}) too. Requests using the binary tensor
// extension (which the specification does not describe) have only their
// answers validated.
func TestV2ConformsToSpec(t *testing.T) {
	router := oipRouter(t)
	ts := startServer(t, Config{}, newFake())
	const model = "/v2/models/fashion-mnist"

	for _, p := range []string{"/v2/health/live", "/v2/health/ready", "/v2"} {
		if r := conform(t, router, ts, "GET", p, "", nil, false); r.code != http.StatusOK {
			t.Errorf("GET %s: %d", p, r.code)
		}
	}
	for _, p := range []string{model, model + "/versions/1"} {
		r := conform(t, router, ts, "GET", p, model+"/versions/1", nil, false)
		if r.code != http.StatusOK {
			t.Errorf("GET %s: %d", p, r.code)
		}
		r = conform(t, router, ts, "GET", p+"/ready", model+"/versions/1/ready", nil, false)
		if r.code != http.StatusOK {
			t.Errorf("GET %s/ready: %d", p, r.code)
		}
	}

	_, pix := testImage(t, 120)
	flat := make([]float32, len(pix))
	newFake().info.Normalize(flat, pix)
	nested := make([][]int, 28)
	for y := range nested {
		nested[y] = make([]int, 28)
		for x := range nested[y] {
			nested[y][x] = int(pix[y*28+x])
		}
	}
	reqs := map[string]any{
		"fp32 flat": map[string]any{"id": "a", "inputs": []any{map[string]any{
			"name": "input", "datatype": "FP32", "shape": []int{1, 1, 28, 28}, "data": flat}}},
		"uint8 nested": map[string]any{"inputs": []any{map[string]any{
			"name": "input_uint8", "datatype": "UINT8", "shape": []int{1, 28, 28}, "data": [][][]int{nested}}},
			"outputs": []any{map[string]any{"name": "probabilities"}}},
	}
	for name, req := range reqs {
		body, _ := json.Marshal(req)
		for _, p := range []string{model + "/infer", model + "/versions/1/infer"} {
			r := conform(t, router, ts, "POST", p, model+"/versions/1/infer", body, false)
			if r.code != http.StatusOK {
				t.Errorf("%s to %s: %d %s", name, p, r.code, r.body)
			}
		}
	}
	bad := map[string]string{
		"wrong shape":    `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,3],"data":[1,2,3]}]}`,
		"wrong datatype": `{"inputs":[{"name":"input","datatype":"BOOL","shape":[1,28,28],"data":[true]}]}`,
		"unknown output": `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,28,28],"data":[1]}],"outputs":[{"name":"nope"}]}`,
	}
	for name, body := range bad {
		r := conform(t, router, ts, "POST", model+"/infer", model+"/versions/1/infer", []byte(body), false)
		if r.code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", name, r.code)
		}
	}
	// Binary tensor extension: only the answer is checked.
	bin := pix
	header := []byte(`{"inputs":[{"name":"input_uint8","datatype":"UINT8","shape":[1,28,28],"parameters":{"binary_data_size":784}}]}`)
	req, _ := http.NewRequest("POST", ts.url+model+"/infer", bytes.NewReader(append(header, bin...)))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(v2HeaderLen, strconv.Itoa(len(header)))
	r := send(t, req)
	if r.code != http.StatusOK {
		t.Fatalf("binary request: %d %s", r.code, r.body)
	}
	specReq := httptest.NewRequest("POST", model+"/versions/1/infer", nil)
	route, params, err := router.FindRoute(specReq)
	if err != nil {
		t.Fatal(err)
	}
	in := &openapi3filter.RequestValidationInput{Request: specReq, PathParams: params, Route: route}
	if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: r.code, Header: r.header, Body: io.NopCloser(bytes.NewReader(r.body))}); err != nil {
		t.Errorf("answer to a binary request does not conform: %v", err)
	}
	// The validator is live: an answer without model_name is refused.
	if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: 200, Header: r.header, Body: io.NopCloser(strings.NewReader(`{"outputs":[]}`))}); err == nil {
		t.Error("the validator accepted an inference answer without model_name")
	}
	if !strings.Contains(string(r.body), `"model_version":"1"`) {
		t.Errorf("answer lacks model_version: %s", r.body)
	}
}
