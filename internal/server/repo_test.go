package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/repository"
)

// copyFile copies src to dst, creating dst's directory.
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testSet returns the first n Fashion-MNIST test images and labels.
func testSet(t testing.TB, n int) ([][]uint8, []int) {
	t.Helper()
	dir := datatest.FashionMNISTDir(t)
	set, err := idx.LoadTest(dir)
	if err != nil {
		t.Fatal(err)
	}
	imgs, labels := make([][]uint8, n), make([]int, n)
	for i := range n {
		imgs[i], labels[i] = set.Images.Image(i), int(set.Labels[i])
	}
	return imgs, labels
}

// v2UINT8Body is a v2 inference request for raw 28×28 images.
func v2UINT8Body(imgs [][]uint8) []byte {
	data := make([]int, 0, len(imgs)*modelfile.Pixels)
	for _, im := range imgs {
		for _, p := range im {
			data = append(data, int(p))
		}
	}
	b, _ := json.Marshal(V2InferRequest{Inputs: []V2InferInput{{
		Name: v2InputUINT8, Datatype: "UINT8", Shape: []int64{int64(len(imgs)), modelfile.Side, modelfile.Side},
		Data: mustJSON(data),
	}}})
	return b
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// v2Classes reads the argmax of each image from a v2 inference answer.
func v2Classes(t testing.TB, r response) (string, []int) {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("inference: status %d: %s", r.code, r.body)
	}
	res := decode[V2InferResponse](t, r)
	out := res.Outputs[0]
	k := int(out.Shape[1])
	var cls []int
	for i := 0; i < int(out.Shape[0]); i++ {
		cls = append(cls, eval.Argmax(out.Data[i*k:(i+1)*k]))
	}
	return res.ModelVersion, cls
}

// waitReady polls /v2/health/ready until it answers 200.
func waitReady(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("server not ready within 60s")
}

// TestRepositoryTwoModels is issue 14's acceptance test: a repository of our
// safetensors model and the report's ONNX model, listed, used, unloaded,
// loaded back, and a second version swapped in under load without a failed
// request.
func TestRepositoryTwoModels(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short: loads and warms up two real models (the repository's swap logic has its own race-tested unit tests)")
	}
	onnxPath := datatest.SharedPath(t, "models/vgg_w32_fmnist.onnx")
	imgs, labels := testSet(t, 4)
	dir := t.TempDir()
	copyFile(t, filepath.Join("..", "..", "model", "fashion-mnist.safetensors"), filepath.Join(dir, "ours", "1", "model.safetensors"))
	copyFile(t, onnxPath, filepath.Join(dir, "vgg", "1", "model.onnx"))
	if err := os.WriteFile(filepath.Join(dir, "vgg", "config.json"), []byte(`{"mean": 0.2860, "std": 0.3530}`), 0o644); err != nil {
		t.Fatal(err)
	}

	ts := startServer(t, Config{ModelRepository: dir, ModelName: "ours", WarmUp: true, MaxBatch: 8}, nil)
	waitReady(t, ts.url)

	index := func() []repository.IndexEntry {
		return decode[[]repository.IndexEntry](t, do(t, "POST", ts.url+"/v2/repository/index", "application/json", nil))
	}
	// Readiness needs only the default model; wait for the other one.
	want := []repository.IndexEntry{{Name: "ours", Version: "1", State: "READY"}, {Name: "vgg", Version: "1", State: "READY"}}
	for deadline := time.Now().Add(60 * time.Second); fmt.Sprint(index()) != fmt.Sprint(want) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if got := index(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("index = %+v, want %+v", got, want)
	}
	body := v2UINT8Body(imgs)
	for _, name := range []string{"ours", "vgg"} {
		ver, cls := v2Classes(t, do(t, "POST", ts.url+"/v2/models/"+name+"/infer", "application/json", body))
		if ver != "1" || fmt.Sprint(cls) != fmt.Sprint(labels) {
			t.Errorf("%s: version %s classes %v, want version 1 classes %v", name, ver, cls, labels)
		}
	}
	// The model parameter of /v1/classify picks a repository model too.
	png, _ := testImage(t, 200)
	if r := do(t, "POST", ts.url+"/v1/classify?model=vgg", "image/png", png); r.code != http.StatusOK {
		t.Errorf("/v1/classify?model=vgg: %d %s", r.code, r.body)
	}

	// Unload vgg: its endpoints answer 400 saying why, unknown names 404.
	if r := do(t, "POST", ts.url+"/v2/repository/models/vgg/unload", "", nil); r.code != http.StatusOK {
		t.Fatalf("unload: %d %s", r.code, r.body)
	}
	for _, c := range []struct {
		method, path string
		code         int
		says         string
	}{
		{"POST", "/v2/models/vgg/infer", http.StatusBadRequest, "unloaded"},
		{"GET", "/v2/models/vgg", http.StatusBadRequest, "unloaded"},
		{"GET", "/v2/models/vgg/ready", http.StatusServiceUnavailable, `"ready":false`},
		{"POST", "/v1/classify?model=vgg", http.StatusBadRequest, "unloaded"},
		{"POST", "/v2/models/nosuch/infer", http.StatusNotFound, "not served"},
		{"POST", "/v2/repository/models/nosuch/load", http.StatusNotFound, "not served"},
	} {
		r := do(t, c.method, ts.url+c.path, "application/json", body)
		if r.code != c.code || !strings.Contains(string(r.body), c.says) {
			t.Errorf("%s %s: %d %s, want %d mentioning %q", c.method, c.path, r.code, r.body, c.code, c.says)
		}
	}
	if got := index(); len(got) != 2 || got[1].State != "UNAVAILABLE" || got[1].Reason != "unloaded" {
		t.Errorf("index after unload = %+v", got)
	}
	if r := do(t, "POST", ts.url+"/v2/repository/models/vgg/load", "", nil); r.code != http.StatusOK {
		t.Fatalf("load: %d %s", r.code, r.body)
	}
	if _, cls := v2Classes(t, do(t, "POST", ts.url+"/v2/models/vgg/infer", "application/json", body)); fmt.Sprint(cls) != fmt.Sprint(labels) {
		t.Errorf("vgg after reload: %v, want %v", cls, labels)
	}

	// Version 2 of ours, loaded while 4 clients send requests.
	copyFile(t, filepath.Join(dir, "ours", "1", "model.safetensors"), filepath.Join(dir, "ours", "2", "model.safetensors"))
	var (
		stop           atomic.Bool
		wg             sync.WaitGroup
		ok, failed     atomic.Int64
		mu             sync.Mutex
		versions       = map[string]int{}
		firstFailure   atomic.Value
		clientDeadline = time.Now().Add(60 * time.Second)
	)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() && time.Now().Before(clientDeadline) {
				resp, err := http.Post(ts.url+"/v2/models/ours/infer", "application/json", bytes.NewReader(body))
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var res V2InferResponse
				if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &res) != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, b))
					continue
				}
				ok.Add(1)
				mu.Lock()
				versions[res.ModelVersion]++
				mu.Unlock()
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	if r := do(t, "POST", ts.url+"/v2/repository/models/ours/load", "", nil); r.code != http.StatusOK {
		t.Errorf("loading version 2: %d %s", r.code, r.body)
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("during the swap: %d requests succeeded, %d failed, by version %v", ok.Load(), failed.Load(), versions)
	if n := failed.Load(); n != 0 {
		t.Errorf("%d requests failed during the swap; first: %v", n, firstFailure.Load())
	}
	if versions["1"] == 0 || versions["2"] == 0 {
		t.Errorf("requests by version %v: want some on each side of the swap", versions)
	}
	md := decode[V2ModelMetadata](t, do(t, "GET", ts.url+"/v2/models/ours", "", nil))
	if fmt.Sprint(md.Versions) != "[2]" {
		t.Errorf("/v2/models/ours versions = %v, want [2]", md.Versions)
	}
	if r := do(t, "GET", ts.url+"/v2/models/ours/versions/1", "", nil); r.code != http.StatusNotFound {
		t.Errorf("withdrawn version 1: %d %s, want 404", r.code, r.body)
	}
}

// TestReadinessWaitsForDefaultModel checks /readyz and /v2/health/ready stay
// 503 while the default model is not loaded.
func TestReadinessWaitsForDefaultModel(t *testing.T) {
	dir := t.TempDir()
	gate := make(chan struct{})
	open := func(_ context.Context, s repository.Spec) (repository.Predictor, error) {
		<-gate
		return newFake(), nil
	}
	copyFile(t, filepath.Join("..", "..", "model", "README.md"), filepath.Join(dir, "slow", "1", "model.safetensors"))
	ts := startServer(t, Config{ModelRepository: dir, ModelName: "slow", OpenModel: open, WarmUp: true}, nil)
	loading := func() bool {
		got := decode[[]repository.IndexEntry](t, do(t, "POST", ts.url+"/v2/repository/index", "", nil))
		return len(got) == 1 && got[0].State == "LOADING"
	}
	for deadline := time.Now().Add(10 * time.Second); !loading() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if !loading() {
		t.Fatal("the index never showed the model LOADING")
	}
	for _, path := range []string{"/readyz", "/v2/health/ready", "/v2/models/slow/ready"} {
		if r := do(t, "GET", ts.url+path, "", nil); r.code != http.StatusServiceUnavailable {
			t.Errorf("%s while loading: %d %s, want 503", path, r.code, r.body)
		}
	}
	close(gate)
	waitReady(t, ts.url)
	if r := do(t, "GET", ts.url+"/readyz", "", nil); r.code != http.StatusOK {
		t.Errorf("/readyz after loading: %d", r.code)
	}
}

// TestWarmUpSizes checks the warm-up covers each power of two and maxBatch.
func TestWarmUpSizes(t *testing.T) {
	for _, c := range []struct {
		max  int
		want string
	}{{1, "[1]"}, {8, "[1 2 4 8]"}, {32, "[1 2 4 8 16 32]"}, {12, "[1 2 4 8 12]"}} {
		if got := fmt.Sprint(warmUpSizes(c.max)); got != c.want {
			t.Errorf("warmUpSizes(%d) = %s, want %s", c.max, got, c.want)
		}
	}
	fake := newFake()
	startServer(t, Config{WarmUp: true, MaxBatch: 8}, fake)
	if got := fmt.Sprint(fake.batchSizes()); got != "[1 2 4 8]" {
		t.Errorf("forward passes before serving: %s, want [1 2 4 8]", got)
	}
}

// TestRepositoryPoll checks -repository-poll picks up a new version and a
// new model without any request, and drops a model whose directory went.
func TestRepositoryPoll(t *testing.T) {
	dir := t.TempDir()
	open := func(context.Context, repository.Spec) (repository.Predictor, error) { return newFake(), nil }
	file := filepath.Join("..", "..", "model", "README.md") // any file: open ignores it
	copyFile(t, file, filepath.Join(dir, "m", "1", "model.safetensors"))
	ts := startServer(t, Config{ModelRepository: dir, ModelName: "m", OpenModel: open, RepositoryPoll: 20 * time.Millisecond}, nil)
	waitReady(t, ts.url)
	copyFile(t, file, filepath.Join(dir, "m", "2", "model.safetensors"))
	copyFile(t, file, filepath.Join(dir, "other", "1", "model.onnx"))
	index := func() string {
		return fmt.Sprint(decode[[]repository.IndexEntry](t, do(t, "POST", ts.url+"/v2/repository/index", "", nil)))
	}
	want := fmt.Sprint([]repository.IndexEntry{{Name: "m", Version: "2", State: "READY"}, {Name: "other", Version: "1", State: "READY"}})
	for deadline := time.Now().Add(10 * time.Second); index() != want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := index(); got != want {
		t.Fatalf("index after polling = %s, want %s", got, want)
	}
	if err := os.RemoveAll(filepath.Join(dir, "other")); err != nil {
		t.Fatal(err)
	}
	want = fmt.Sprint([]repository.IndexEntry{{Name: "m", Version: "2", State: "READY"}})
	for deadline := time.Now().Add(10 * time.Second); index() != want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := index(); got != want {
		t.Errorf("index after removing a model = %s, want %s", got, want)
	}
}
