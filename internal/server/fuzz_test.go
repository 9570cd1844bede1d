package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fashion-classifier/fashion/internal/fetch"
	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// Fuzz targets for every request decoder. Run one with, for example,
//
//	go test -run '^$' -fuzz FuzzDecodeInferRequest -fuzztime 30s ./internal/server
//
// Each checks that bad input gives an error, never a panic, and that what
// the decoder accepts keeps the invariants the handlers rely on.

func FuzzDecodeClassifyJSON(f *testing.F) {
	for _, s := range []string{
		`{"url":"https://example.com/a.png"}`,
		`{"image_base64":"iVBORw0KGgo=","top_k":5,"include_input":true}`,
		`{"images":[{"url":"http://a/"},{"image_base64":"AAAA"},{}]}`,
		`{"images":[]}`,
		`{"url":"x","image_base64":"y"}`,
		`{"top_k":-1}`,
		`[]`, `null`, `{"images":null}`, `{"url":1}`, `{} {}`, `{"unknown":true}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeClassifyJSON(data, 16)
		if err != nil {
			return
		}
		set := 0
		if req.URL != "" {
			set++
		}
		if req.ImageBase64 != "" {
			set++
		}
		if req.Images != nil {
			set++
			if len(req.Images) == 0 || len(req.Images) > 16 {
				t.Fatalf("accepted %d images with a limit of 16", len(req.Images))
			}
		}
		if set != 1 {
			t.Fatalf("accepted a request with %d image sources: %s", set, data)
		}
		if req.ImageBase64 != "" {
			decodeBase64(req.ImageBase64) // must not panic
		}
	})
}

func FuzzDecodeBase64(f *testing.F) {
	for _, s := range []string{"", "AAAA", "AAA", "AA==", "data:image/png;base64,AAAA", "data:,x", "a-_b", "QUJD\nREVG", "!!!!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := decodeBase64(s)
		if err == nil && len(b) > len(s) {
			t.Fatalf("decoded %d bytes from %d characters", len(b), len(s))
		}
	})
}

func FuzzReadMultipart(f *testing.F) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.SetBoundary("b0undary")
	mw.WriteField("note", "x")
	w, _ := mw.CreateFormFile("file", "a.png")
	w.Write([]byte("\x89PNG\r\n\x1a\n"))
	w, _ = mw.CreateFormFile("file", "b.png")
	w.Write([]byte("second"))
	mw.Close()
	f.Add(buf.Bytes(), "b0undary")
	f.Add([]byte("--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc\r\n--x--\r\n"), "x")
	f.Add([]byte("--x\r\n\r\n"), "x")
	f.Add([]byte(""), "")
	f.Add([]byte("garbage"), "garbage")
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		l, err := newByteBudget(1 << 20).newLease()
		if err != nil {
			t.Fatal(err)
		}
		defer l.release()
		ups, err := readMultipart(body, l, boundary, 4)
		if err != nil {
			if statusOf(err) != http.StatusBadRequest && statusOf(err) != http.StatusRequestEntityTooLarge && statusOf(err) != http.StatusServiceUnavailable {
				t.Fatalf("error %v has status %d, want 400 or 413", err, statusOf(err))
			}
			return
		}
		if len(ups) == 0 || len(ups) > 4 {
			t.Fatalf("accepted %d files with a limit of 4", len(ups))
		}
	})
}

func FuzzDecodeInferRequest(f *testing.F) {
	pix := make([]byte, modelfile.Pixels)
	fp := make([]byte, 4*modelfile.Pixels)
	// Valid JSON-data requests need 784 values; such large seeds make the
	// fuzzer's minimisation crawl, so the JSON seeds are small and invalid
	// and the valid ones use the binary extension (TestV2Infer covers the
	// valid JSON forms).
	f.Add([]byte(`{"inputs":[{"name":"input_uint8","shape":[1,28,28],"datatype":"UINT8","parameters":{"binary_data_size":784}}]}`), pix)
	f.Add([]byte(`{"inputs":[{"name":"input","shape":[1,28,28],"datatype":"FP32","parameters":{"binary_data_size":3136}}]}`), fp)
	f.Add([]byte(`{"inputs":[{"name":"input","shape":[1,28,28],"datatype":"FP32","data":[[[1e39]]]}]}`), []byte(nil))
	f.Add([]byte(`{"inputs":[{"name":"input","shape":[-1,28,28],"datatype":"FP32","data":[]}]}`), []byte(nil))
	f.Add([]byte(`{"inputs":[{"name":"input","shape":[1,28,28],"datatype":"UINT8","data":[1.5, -0, 2e2, [[]]]}]}`), []byte(nil))
	f.Add([]byte(`{"inputs":[]}`), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, header, bin []byte) {
		info := newFake().Info()
		in, err := decodeInferRequest(header, bin, info, 4)
		if err != nil {
			return
		}
		if in.n < 1 || in.n > 4 || len(in.x) != in.n*modelfile.Pixels {
			t.Fatalf("accepted %d images with %d values", in.n, len(in.x))
		}
		for i, v := range in.x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("value %d is %v", i, v)
			}
		}
	})
}

// FuzzClassifyEndpoints sends arbitrary bodies to the upload and v2
// endpoints through the whole handler stack and checks every answer is a
// JSON object with a client-error or success status: bad input must never
// look like a server fault.
func FuzzClassifyEndpoints(f *testing.F) {
	img, _ := testImage(f, 200)
	f.Add(uint8(0), img)
	f.Add(uint8(0), img[:40])
	f.Add(uint8(1), []byte(`{"image_base64":"`+base64.StdEncoding.EncodeToString(img)+`"}`))
	f.Add(uint8(1), []byte(`{"images":[{"image_base64":"AAAA"},{"url":"http://127.0.0.1:1/"}]}`))
	f.Add(uint8(2), []byte("--fz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n"+string(img)+"\r\n--fz--\r\n"))
	f.Add(uint8(3), []byte(`{"inputs":[{"name":"input","shape":[1,28,28],"datatype":"UINT8","data":[0]}]}`))
	// Only the host 127.0.0.1 may be named, and the default policy refuses
	// to dial loopback: fuzzed URLs cause no DNS lookup and no traffic.
	policy := fetch.Policy{AllowHosts: []string{"127.0.0.1"}}
	s, err := New(Config{MaxBody: 1 << 20, MaxImages: 4, MaxPixels: 1 << 16, Fetch: policy}, newFake(), nil)
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	kinds := []struct{ path, contentType string }{
		{"/v1/classify", "image/png"},
		{"/v1/classify", "application/json"},
		{"/v1/classify", "multipart/form-data; boundary=fz"},
		{"/v2/models/fashion-mnist/infer", "application/json"},
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		k := kinds[int(kind)%len(kinds)]
		req := httptest.NewRequest("POST", k.path, bytes.NewReader(body))
		req.Header.Set("Content-Type", k.contentType)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s with %d bytes: status %d: %s", k.path, len(body), rec.Code, rec.Body.Bytes())
		}
		var v map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatalf("%s: answer is not a JSON object (%v): %.200s", k.path, err, rec.Body.Bytes())
		}
		if rec.Code != 200 && v["error"] == nil {
			t.Fatalf("%s: status %d without an error message", k.path, rec.Code)
		}
	})
}
