package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fashion-classifier/fashion/internal/fetch"
	"github.com/fashion-classifier/fashion/internal/modelfile"
)

func TestEndpoints(t *testing.T) {
	ts := startServer(t, Config{}, newFake())
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		method, path string
		code         int
		contentType  string // prefix of the expected Content-Type
		contains     string
	}{
		{"GET", "/", 200, "text/html", "<input"},
		{"GET", "/healthz", 200, "application/json", `"ok"`},
		{"GET", "/readyz", 200, "application/json", `"ready"`},
		{"GET", "/metrics", 200, "text/plain", "fashion_queue_depth"},
		{"GET", "/openapi.json", 200, "application/json", `"openapi"`},
		{"GET", "/docs", 301, "", ""},
		{"GET", "/docs/", 200, "text/html", "swagger-ui"},
		{"GET", "/docs/swagger-initializer.js", 200, "text/javascript", "openapi.json"},
		{"GET", "/docs/swagger-ui-bundle.js", 200, "text/javascript", "SwaggerUIBundle"},
		{"GET", "/v1/model", 200, "application/json", `"classes"`},
		{"GET", "/v2", 200, "application/json", `"extensions"`},
		{"GET", "/v2/health/live", 200, "application/json", `"live":true`},
		{"GET", "/v2/health/ready", 200, "application/json", `"ready":true`},
		{"GET", "/v2/models/fashion-mnist", 200, "application/json", `"UINT8"`},
		{"GET", "/v2/models/fashion-mnist", 200, "application/json", `"parameters":{"precision":"int8","storage":"f16"}`},
		{"GET", "/v1/model", 200, "application/json", `"precision":"int8"`},
		{"GET", "/v1/model", 200, "application/json", `"storage":"f16"`},
		{"GET", "/v2/models/fashion-mnist/versions/1", 200, "application/json", `"probabilities"`},
		{"GET", "/v2/models/fashion-mnist/ready", 200, "application/json", `"ready":true`},
		{"GET", "/v2/models/fashion-mnist/versions/1/ready", 200, "application/json", `"ready":true`},
		{"GET", "/v2/models/resnet/ready", 404, "application/json", `"error"`},
		{"GET", "/v2/models/other", 404, "application/json", `not served`},
		{"GET", "/v2/models/fashion-mnist/versions/7", 404, "application/json", `no version`},
		{"GET", "/image-classify", 400, "application/json", "missing url"},
		{"GET", "/image-view", 400, "application/json", "missing url"},
		{"POST", "/healthz", 405, "", ""},
		{"GET", "/v1/classify", 405, "", ""},
		{"GET", "/no-such-page", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, ts.url+tt.path, nil)
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body bytes.Buffer
			body.ReadFrom(resp.Body)
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d; body %.200s", resp.StatusCode, tt.code, body.String())
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want prefix %q", ct, tt.contentType)
			}
			if !strings.Contains(body.String(), tt.contains) {
				t.Errorf("body does not contain %q: %.300s", tt.contains, body.String())
			}
			if resp.Header.Get("X-Request-ID") == "" {
				t.Error("no X-Request-ID in the answer")
			}
		})
	}
}

func TestClassifyRaw(t *testing.T) {
	ts := startServer(t, Config{}, newFake())
	for _, v := range []uint8{0, 100, 150, 200, 255} {
		img, pix := testImage(t, v)
		want := expectedClass(pix)
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			r := do(t, "POST", ts.url+"/v1/classify", "image/png", img)
			if r.code != 200 {
				t.Fatalf("status %d: %s", r.code, r.body)
			}
			res := decode[Result](t, r)
			if res.ClassID != want || res.Label != modelfile.FashionClasses[want] {
				t.Errorf("got class %d %q, want %d %q", res.ClassID, res.Label, want, modelfile.FashionClasses[want])
			}
			if res.Confidence != 0.55 || len(res.Top) != defaultTopK || res.Top[0].ClassID != want {
				t.Errorf("confidence %v, top %+v; want 0.55 and %d entries led by %d", res.Confidence, res.Top, defaultTopK, want)
			}
			if res.InputImage != "" {
				t.Error("input_image present without include_input")
			}
		})
	}

	img, pix := testImage(t, 200)
	r := do(t, "POST", ts.url+"/v1/classify?top_k=10&include_input=1", "image/png", img)
	res := decode[Result](t, r)
	if len(res.Top) != 10 {
		t.Errorf("top_k=10 gave %d entries", len(res.Top))
	}
	const prefix = "data:image/png;base64,"
	if !strings.HasPrefix(res.InputImage, prefix) {
		t.Fatalf("input_image %.40q is not a PNG data URL", res.InputImage)
	}
	b, err := base64.StdEncoding.DecodeString(res.InputImage[len(prefix):])
	if err != nil {
		t.Fatal(err)
	}
	in, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	g, ok := in.(*image.Gray)
	if !ok || !bytes.Equal(g.Pix, pix) {
		t.Error("input_image is not the 28×28 image sent (a dataset-like image must reach the model unchanged)")
	}
}

// pngHeader returns the first bytes of a PNG claiming w×h pixels: enough
// for DecodeConfig, so a decompression bomb can be refused before decoding.
func pngHeader(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, w, h))
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestClassifyErrors(t *testing.T) {
	ts := startServer(t, Config{MaxBody: 64 << 10, MaxPixels: 100 * 100}, newFake())
	img, _ := testImage(t, 200)
	tests := []struct {
		name        string
		contentType string
		body        []byte
		code        int
		contains    string
	}{
		{"text body declared as PNG", "image/png", []byte("hello, not an image"), 415, ""},
		{"wrong content type", "text/plain", img, 415, "not accepted"},
		{"form encoded", "application/x-www-form-urlencoded", img, 415, "not accepted"},
		{"malformed content type", "image/png; ===", img, 415, ""},
		{"truncated PNG", "image/png", img[:len(img)/2], 400, ""},
		{"empty body", "image/png", nil, 400, "empty"},
		{"body over the cap", "image/png", bytes.Repeat([]byte{1}, 65<<10), 413, "limit"},
		{"too many pixels", "image/png", pngHeader(t, 200, 200), 413, ""},
		{"bad top_k", "image/png", img, 400, "top_k"},
		{"multipart without boundary", "multipart/form-data", img, 400, "boundary"},
		{"multipart garbage", "multipart/form-data; boundary=xyz", []byte("--xyz\r\nnonsense"), 400, "multipart"},
		{"JSON not an object", "application/json", []byte(`[1,2]`), 400, "JSON"},
		{"JSON unknown field", "application/json", []byte(`{"image_base46":"AAAA"}`), 400, "unknown field"},
		{"JSON two sources", "application/json", []byte(`{"url":"http://x/","image_base64":"AAAA"}`), 400, "exactly one"},
		{"JSON empty images", "application/json", []byte(`{"images":[]}`), 400, "empty"},
		{"JSON bad base64", "application/json", []byte(`{"image_base64":"!!!"}`), 400, "base64"},
		{"JSON base64 of text", "application/json", []byte(`{"image_base64":"aGVsbG8gd29ybGQ="}`), 415, ""},
		{"JSON trailing data", "application/json", []byte(`{"image_base64":"AAAA"} {}`), 400, "after"},
		{"JSON bad top_k", "application/json", []byte(`{"image_base64":"AAAA","top_k":11}`), 400, "top_k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := ts.url + "/v1/classify"
			if tt.name == "bad top_k" {
				u += "?top_k=zero"
			}
			r := do(t, "POST", u, tt.contentType, tt.body)
			if r.code != tt.code {
				t.Fatalf("status %d, want %d: %s", r.code, tt.code, r.body)
			}
			e := decode[errorBody](t, r)
			if e.Error == "" || !strings.Contains(e.Error, tt.contains) {
				t.Errorf("error %q, want one mentioning %q", e.Error, tt.contains)
			}
		})
	}
}

// multipartBody builds a multipart/form-data body with one "file" part per
// entry of files, plus an unrelated form field that must be ignored.
func multipartBody(t *testing.T, files ...[]byte) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("note", "ignored")
	for i, f := range files {
		w, err := mw.CreateFormFile("file", fmt.Sprintf("img%d.png", i))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(f)
	}
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

func TestClassifyMultipart(t *testing.T) {
	fake := newFake()
	ts := startServer(t, Config{MaxImages: 4}, fake)
	a, apix := testImage(t, 255)
	c, cpix := testImage(t, 100)

	// One file answers a single Result.
	body, ct := multipartBody(t, a)
	r := do(t, "POST", ts.url+"/v1/classify", ct, body)
	if r.code != 200 {
		t.Fatalf("single file: status %d: %s", r.code, r.body)
	}
	if res := decode[Result](t, r); res.ClassID != expectedClass(apix) {
		t.Errorf("single file: class %d, want %d", res.ClassID, expectedClass(apix))
	}

	// A batch with a bad file in the middle: the others are still classified.
	body, ct = multipartBody(t, a, []byte("plain text, not an image"), c)
	before := len(fake.batchSizes())
	r = do(t, "POST", ts.url+"/v1/classify?top_k=2", ct, body)
	if r.code != 200 {
		t.Fatalf("batch: status %d: %s", r.code, r.body)
	}
	got := decode[BatchResponse](t, r)
	if len(got.Results) != 3 {
		t.Fatalf("batch: %d results, want 3: %s", len(got.Results), r.body)
	}
	if it := got.Results[0]; it.Result == nil || it.ClassID != expectedClass(apix) || len(it.Top) != 2 {
		t.Errorf("batch item 0: %+v, want class %d with 2 top entries", it, expectedClass(apix))
	}
	if it := got.Results[1]; it.Result != nil || it.Status != 400 && it.Status != 415 || !strings.Contains(it.Error, "img1.png") {
		t.Errorf("batch item 1: %+v, want an error naming img1.png with status 400 or 415", it)
	}
	if it := got.Results[2]; it.Result == nil || it.ClassID != expectedClass(cpix) {
		t.Errorf("batch item 2: %+v, want class %d", it, expectedClass(cpix))
	}
	if sizes := fake.batchSizes()[before:]; len(sizes) != 1 || sizes[0] != 2 {
		t.Errorf("the two good images ran as batches %v, want one batch of 2", sizes)
	}
	for i, it := range got.Results {
		if want := fmt.Sprintf("img%d.png", i); it.File != want {
			t.Errorf("batch item %d names file %q, want %q", i, it.File, want)
		}
	}

	// More files than MaxImages is refused as a whole.
	body, ct = multipartBody(t, a, a, a, a, a)
	if r := do(t, "POST", ts.url+"/v1/classify", ct, body); r.code != 413 {
		t.Errorf("5 files with MaxImages 4: status %d, want 413: %s", r.code, r.body)
	}
	// No file part at all.
	body, ct = multipartBody(t)
	if r := do(t, "POST", ts.url+"/v1/classify", ct, body); r.code != 400 {
		t.Errorf("no file part: status %d, want 400: %s", r.code, r.body)
	}
}

// imageServer serves PNG images on loopback and counts the requests it
// gets, to prove refused URLs never reach their target.
type imageServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newImageServer(t *testing.T, img []byte) *imageServer {
	s := &imageServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		switch r.URL.Path {
		case "/shirt.png":
			w.Header().Set("Content-Type", "image/png")
			w.Write(img)
		case "/text":
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("just text"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestClassifyJSON(t *testing.T) {
	a, apix := testImage(t, 255)
	c, cpix := testImage(t, 100)
	imgs := newImageServer(t, c)
	ts := startServer(t, Config{Fetch: fetch.Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}, newFake())
	b64 := base64.StdEncoding.EncodeToString(a)

	r := do(t, "POST", ts.url+"/v1/classify", "application/json", []byte(`{"image_base64":"`+b64+`","top_k":5}`))
	if res := decode[Result](t, r); r.code != 200 || res.ClassID != expectedClass(apix) || len(res.Top) != 5 {
		t.Errorf("image_base64: status %d, %+v; want class %d with 5 top entries", r.code, res, expectedClass(apix))
	}
	r = do(t, "POST", ts.url+"/v1/classify", "application/json", []byte(`{"image_base64":"data:image/png;base64,`+b64+`"}`))
	if res := decode[Result](t, r); r.code != 200 || res.ClassID != expectedClass(apix) {
		t.Errorf("data URL: status %d, %+v", r.code, res)
	}
	r = do(t, "POST", ts.url+"/v1/classify", "application/json", []byte(`{"url":"`+imgs.URL+`/shirt.png"}`))
	if res := decode[Result](t, r); r.code != 200 || res.ClassID != expectedClass(cpix) {
		t.Errorf("url: status %d, %+v; want class %d", r.code, res, expectedClass(cpix))
	}

	batch := fmt.Sprintf(`{"images":[{"image_base64":%q},{"url":%q},{"image_base64":"%%%%"},{"url":%q},{}]}`,
		b64, imgs.URL+"/shirt.png", imgs.URL+"/missing.png")
	r = do(t, "POST", ts.url+"/v1/classify", "application/json", []byte(batch))
	if r.code != 200 {
		t.Fatalf("batch: status %d: %s", r.code, r.body)
	}
	got := decode[BatchResponse](t, r).Results
	if len(got) != 5 {
		t.Fatalf("batch: %d results, want 5: %s", len(got), r.body)
	}
	if got[0].Result == nil || got[0].ClassID != expectedClass(apix) {
		t.Errorf("item 0: %+v", got[0])
	}
	if got[1].Result == nil || got[1].ClassID != expectedClass(cpix) {
		t.Errorf("item 1: %+v", got[1])
	}
	for i := 2; i < 5; i++ {
		if got[i].Result != nil || got[i].Error == "" || got[i].Status < 400 {
			t.Errorf("item %d: %+v, want an error", i, got[i])
		}
	}
}

// TestFetchPolicy runs the report's URL endpoints against a local image
// server: allowed when the operator allows 127.0.0.0/8, refused under the
// default policy without the image server seeing a single request.
func TestFetchPolicy(t *testing.T) {
	img, pix := testImage(t, 200)
	imgs := newImageServer(t, img)
	allowed := startServer(t, Config{Fetch: fetch.Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}, newFake())
	q := url.QueryEscape(imgs.URL + "/shirt.png")

	t.Run("allowed", func(t *testing.T) {
		r := do(t, "GET", allowed.url+"/image-classify?url="+q, "", nil)
		if r.code != 200 {
			t.Fatalf("image-classify: status %d: %s", r.code, r.body)
		}
		if res := decode[Result](t, r); res.ClassID != expectedClass(pix) || len(res.Top) != 3 {
			t.Errorf("image-classify: %+v, want class %d with 3 top entries", res, expectedClass(pix))
		}
		r = do(t, "GET", allowed.url+"/image-classify?top_k=1&url="+q, "", nil)
		if res := decode[Result](t, r); len(res.Top) != 1 {
			t.Errorf("top_k=1: %d entries", len(res.Top))
		}
		for _, tt := range []struct {
			query string
			side  int
		}{{"", 28}, {"&preprocessed=1", 280}, {"&preprocessed=1&scale=4", 112}} {
			r = do(t, "GET", allowed.url+"/image-view?url="+q+tt.query, "", nil)
			if r.code != 200 || r.header.Get("Content-Type") != "image/png" {
				t.Fatalf("image-view%s: status %d, type %q: %.200s", tt.query, r.code, r.header.Get("Content-Type"), r.body)
			}
			cfg, err := png.DecodeConfig(bytes.NewReader(r.body))
			if err != nil || cfg.Width != tt.side || cfg.Height != tt.side {
				t.Errorf("image-view%s: %v, %dx%d; want a %dx%d PNG", tt.query, err, cfg.Width, cfg.Height, tt.side, tt.side)
			}
		}
		for _, tt := range []struct {
			path string
			code int
		}{
			{"/image-classify?url=" + url.QueryEscape(imgs.URL+"/text"), 415},
			{"/image-view?url=" + url.QueryEscape(imgs.URL+"/text"), 415},
			{"/image-view?preprocessed=maybe&url=" + q, 400},
			{"/image-view?scale=100&url=" + q, 400},
		} {
			r := do(t, "GET", allowed.url+tt.path, "", nil)
			if r.code != tt.code && !(tt.code == 415 && r.code >= 400 && r.code < 500) {
				t.Errorf("%s: status %d, want %d: %s", tt.path, r.code, tt.code, r.body)
			}
		}
	})

	t.Run("refused by default", func(t *testing.T) {
		def := startServer(t, Config{}, newFake())
		before := imgs.hits.Load()
		for _, path := range []string{
			"/image-classify?url=" + q,
			"/image-view?url=" + q,
			"/image-view?preprocessed=1&url=" + q,
		} {
			r := do(t, "GET", def.url+path, "", nil)
			if r.code != 400 && r.code != 403 {
				t.Errorf("%s: status %d, want 400 or 403: %s", path, r.code, r.body)
			}
			if e := decode[errorBody](t, r); e.Error == "" {
				t.Errorf("%s: refusal without a reason", path)
			}
		}
		r := do(t, "POST", def.url+"/v1/classify", "application/json", []byte(`{"url":"`+imgs.URL+`/shirt.png"}`))
		if r.code != 400 && r.code != 403 {
			t.Errorf("JSON url: status %d, want 400 or 403: %s", r.code, r.body)
		}
		if n := imgs.hits.Load() - before; n != 0 {
			t.Errorf("the image server saw %d requests under the default policy, want 0", n)
		}
		m := do(t, "GET", def.url+"/metrics", "", nil)
		if !bytes.Contains(m.body, []byte("fashion_fetch_failures_total{reason=")) {
			t.Error("refusals are not counted in fashion_fetch_failures_total")
		}
	})
}

func TestMiddleware(t *testing.T) {
	ts := startServer(t, Config{CORSOrigins: []string{"https://shop.example"}}, newFake())

	req, _ := http.NewRequest("GET", ts.url+"/healthz", nil)
	req.Header.Set("X-Request-ID", "abc-123")
	if r := send(t, req); r.header.Get("X-Request-ID") != "abc-123" {
		t.Errorf("X-Request-ID %q, want the client's abc-123 echoed", r.header.Get("X-Request-ID"))
	}
	req.Header.Set("X-Request-ID", "bad id\twith spaces")
	if r := send(t, req); r.header.Get("X-Request-ID") == "" || strings.Contains(r.header.Get("X-Request-ID"), " ") {
		t.Errorf("invalid client ID was not replaced: %q", r.header.Get("X-Request-ID"))
	}

	tests := []struct {
		name, method, origin string
		code                 int
		allow                string
	}{
		{"allowed origin", "GET", "https://shop.example", 200, "https://shop.example"},
		{"other origin", "GET", "https://evil.example", 200, ""},
		{"preflight allowed", "OPTIONS", "https://shop.example", 204, "https://shop.example"},
		{"preflight other", "OPTIONS", "https://evil.example", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/healthz"
			if tt.method == "OPTIONS" {
				path = "/v1/classify"
			}
			req, _ := http.NewRequest(tt.method, ts.url+path, nil)
			req.Header.Set("Origin", tt.origin)
			if tt.method == "OPTIONS" {
				req.Header.Set("Access-Control-Request-Method", "POST")
			}
			r := send(t, req)
			if r.code != tt.code {
				t.Errorf("status %d, want %d", r.code, tt.code)
			}
			if got := r.header.Get("Access-Control-Allow-Origin"); got != tt.allow {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tt.allow)
			}
		})
	}

	// A panicking handler answers 500 JSON and the server lives on.
	h := ts.Server.middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), `"error"`) {
		t.Errorf("panic: status %d body %q, want 500 with a JSON error", rec.Code, rec.Body.String())
	}
}

func TestModelPanicIs500(t *testing.T) {
	fake := newFake()
	fake.panics = true
	ts := startServer(t, Config{}, fake)
	img, _ := testImage(t, 1)
	r := do(t, "POST", ts.url+"/v1/classify", "image/png", img)
	if r.code != 500 || !strings.Contains(decode[errorBody](t, r).Error, "panicked") {
		t.Errorf("status %d: %s; want 500 saying the model panicked", r.code, r.body)
	}
	if r := do(t, "GET", ts.url+"/healthz", "", nil); r.code != 200 {
		t.Errorf("server unhealthy after a model panic: %d", r.code)
	}
}

func TestMetricsCount(t *testing.T) {
	ts := startServer(t, Config{}, newFake())
	img, _ := testImage(t, 200)
	for range 3 {
		do(t, "POST", ts.url+"/v1/classify", "image/png", img)
	}
	m := string(do(t, "GET", ts.url+"/metrics", "", nil).body)
	for _, want := range []string{
		`fashion_http_requests_total{code="200",route="POST /v1/classify"} 3`,
		`fashion_images_classified_total 3`,
		`fashion_batch_size_images_count 3`,
		`fashion_inference_duration_seconds_count 3`,
		`fashion_http_request_duration_seconds_count{route="POST /v1/classify"} 3`,
		`go_goroutines`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	var js map[string]any
	if err := json.Unmarshal(do(t, "GET", ts.url+"/v1/model", "", nil).body, &js); err != nil || js["name"] != "fashion-mnist" {
		t.Errorf("/v1/model: %v %v", js, err)
	}
}
