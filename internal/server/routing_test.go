package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/fetch"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/predictor"
	"github.com/fashion-classifier/fashion/internal/repository"
)

// routedFakes is a benchmark fake with the ten classes and a photo fake
// with two more (a photo model may add classes), paired as the embedded
// models are.
func routedFakes(t testing.TB) (*predictor.Routed, *fakePredictor, *fakePredictor) {
	t.Helper()
	bench, photo := newFake(), newFake()
	bench.info.Name = modelfile.DefaultName
	photo.info.Name = modelfile.PhotoName
	photo.info.Classes = append(slices.Clone(modelfile.FashionClasses), "Hat", "Skirt")
	r, err := predictor.NewRouted(bench, photo)
	if err != nil {
		t.Fatal(err)
	}
	return r, bench, photo
}

// TestRouting: with a routed pair, every image endpoint answers a 28×28
// dataset image with the benchmark model and a photo with the photo
// model, says which in "model", keeps input order in batches, and a
// request naming a model gets that model for everything.
func TestRouting(t *testing.T) {
	dataset, _ := testImage(t, 200)
	photo := productPhoto(t)
	images := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/dataset.png":
			w.Write(dataset)
		case "/photo.png":
			w.Write(photo)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(images.Close)
	logFile := filepath.Join(t.TempDir(), "requests.jsonl")
	routed, bench, photoFake := routedFakes(t)
	ts := startServer(t, Config{
		Fetch:      fetch.Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		RequestLog: logFile,
	}, routed)
	const (
		benchName = modelfile.DefaultName
		photoName = modelfile.PhotoName
	)
	single := []struct {
		name   string
		method string
		path   string
		ct     string
		body   []byte
		want   string
	}{
		{"raw dataset image", "POST", "/v1/classify", "image/png", dataset, benchName},
		{"raw photo", "POST", "/v1/classify", "image/png", photo, photoName},
		{"url dataset image", "GET", "/image-classify?url=" + images.URL + "/dataset.png", "", nil, benchName},
		{"url photo", "GET", "/image-classify?url=" + images.URL + "/photo.png", "", nil, photoName},
		{"own sample", "GET", "/image-classify?url=" + ts.url + "/samples/ankle-boot.png", "", nil, benchName},
		{"json base64 photo", "POST", "/v1/classify", "application/json", []byte(`{"image_base64":"` + base64.StdEncoding.EncodeToString(photo) + `"}`), photoName},
		{"json url dataset image", "POST", "/v1/classify", "application/json", []byte(`{"url":"` + images.URL + `/dataset.png"}`), benchName},
		{"named benchmark, photo", "POST", "/v1/classify?model=" + benchName, "image/png", photo, benchName},
		{"named photo model, dataset image", "POST", "/v1/classify?model=" + photoName, "image/png", dataset, photoName},
		{"named version, photo", "POST", "/v1/classify?version=1", "image/png", photo, benchName},
	}
	for _, tt := range single {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, ts.url+tt.path, tt.ct, tt.body)
			if r.code != 200 {
				t.Fatalf("status %d: %s", r.code, r.body)
			}
			res := decode[Result](t, r)
			if res.Model != tt.want {
				t.Errorf("answered by %q, want %q", res.Model, tt.want)
			}
			if res.Label == "" || len(res.Top) != defaultTopK {
				t.Errorf("incomplete result %+v", res)
			}
		})
	}

	// Batches: multipart and JSON, mixed, answered in input order.
	body, ct := multipartBody(t, photo, dataset, photo, dataset)
	r := do(t, "POST", ts.url+"/v1/classify", ct, body)
	if r.code != 200 {
		t.Fatalf("multipart batch: status %d: %s", r.code, r.body)
	}
	want := []string{photoName, benchName, photoName, benchName}
	for i, item := range decode[BatchResponse](t, r).Results {
		if item.Result == nil || item.Model != want[i] || item.File != "img"+string(rune('0'+i))+".png" {
			t.Errorf("multipart item %d = %+v, want file img%d.png answered by %s", i, item, i, want[i])
		}
	}
	jb, _ := json.Marshal(ClassifyRequest{Images: []ImageRef{
		{URL: images.URL + "/dataset.png"}, {URL: images.URL + "/photo.png"}, {ImageBase64: base64.StdEncoding.EncodeToString(dataset)},
	}})
	r = do(t, "POST", ts.url+"/v1/classify", "application/json", jb)
	want = []string{benchName, photoName, benchName}
	for i, item := range decode[BatchResponse](t, r).Results {
		if item.Result == nil || item.Model != want[i] {
			t.Errorf("JSON item %d = %+v, want one answered by %s", i, item, want[i])
		}
	}

	// top_k up to the photo model's 12 classes; a ranking never longer
	// than its model's classes.
	r = do(t, "POST", ts.url+"/v1/classify?top_k=12", "image/png", dataset)
	if res := decode[Result](t, r); r.code != 200 || len(res.Top) != 10 || res.Model != benchName {
		t.Errorf("top_k=12 on a dataset image: status %d, %d entries by %s; want 10 by %s", r.code, len(res.Top), res.Model, benchName)
	}
	r = do(t, "POST", ts.url+"/v1/classify?top_k=12", "image/png", photo)
	if res := decode[Result](t, r); r.code != 200 || len(res.Top) != 12 {
		t.Errorf("top_k=12 on a photo: status %d, %d entries, want 12", r.code, len(res.Top))
	}
	if r := do(t, "POST", ts.url+"/v1/classify?top_k=13", "image/png", photo); r.code != 400 {
		t.Errorf("top_k=13: status %d, want 400", r.code)
	}

	// /v1/model describes both; the repository and /v2 serve both.
	mr := decode[ModelResponse](t, do(t, "GET", ts.url+"/v1/model", "", nil))
	if mr.Name != benchName || mr.PhotoModel == nil || mr.PhotoModel.Name != photoName || len(mr.PhotoModel.Classes) != 12 {
		t.Errorf("/v1/model = %+v, want %s with photo model %s", mr, benchName, photoName)
	}
	if mr := decode[ModelResponse](t, do(t, "GET", ts.url+"/v1/model?model="+photoName, "", nil)); mr.Name != photoName || mr.PhotoModel != nil {
		t.Errorf("/v1/model?model=%s = %+v", photoName, mr)
	}
	idx := do(t, "POST", ts.url+"/v2/repository/index", "application/json", nil)
	for _, name := range []string{benchName, photoName} {
		if !bytes.Contains(idx.body, []byte(`"name":"`+name+`"`)) {
			t.Errorf("repository index lacks %s: %s", name, idx.body)
		}
		if r := do(t, "GET", ts.url+"/v2/models/"+name, "", nil); r.code != 200 {
			t.Errorf("/v2/models/%s: status %d", name, r.code)
		}
	}
	if len(bench.batchSizes()) == 0 || len(photoFake.batchSizes()) == 0 {
		t.Errorf("batches: benchmark %v, photo %v; want both models used", bench.batchSizes(), photoFake.batchSizes())
	}

	// The request log names the model of each image of a routed request.
	ts.stop(t)
	logged, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	// The mixed multipart batch (photo, dataset, photo, dataset): model by
	// model, the default first.
	if !strings.Contains(string(logged), `"answered_by":["`+benchName+`","`+benchName+`","`+photoName+`","`+photoName+`"]`) {
		t.Errorf("request log has no answered_by for a mixed batch:\n%s", logged)
	}
}

// TestRoutingRepositoryDefault: a repository model that replaces the
// default answers everything, photos too.
func TestRoutingRepositoryDefault(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, modelfile.DefaultName, "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, modelfile.DefaultName, "1", "model.safetensors"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	open := func(context.Context, repository.Spec) (repository.Predictor, error) { return newFake(), nil }
	routed, _, _ := routedFakes(t)
	ts := startServer(t, Config{ModelRepository: dir, OpenModel: open}, routed)
	waitReady(t, ts.url)
	r := do(t, "POST", ts.url+"/v1/classify", "image/png", productPhoto(t))
	if res := decode[Result](t, r); r.code != 200 || res.Model != modelfile.DefaultName {
		t.Errorf("photo with a repository default: status %d, answered by %q, want the repository's %s", r.code, res.Model, modelfile.DefaultName)
	}
	if r := do(t, "GET", ts.url+"/v2/models/"+modelfile.PhotoName, "", nil); r.code != 404 {
		t.Errorf("photo model served beside a repository default: status %d, want 404", r.code)
	}
}
