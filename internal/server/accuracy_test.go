package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/predictor"
)

// accuracyImages is how many test-set images the HTTP accuracy test sends.
const accuracyImages = 200

// TestAccuracyThroughHTTP serves the real embedded model and checks that
// classifying test-set images through HTTP — as PNG uploads to
// /v1/classify and as UINT8 tensors to the v2 protocol — gives the same
// accuracy as calling Predict directly on the same images.
func TestAccuracyThroughHTTP(t *testing.T) {
	clf, err := predictor.Open(context.Background(), os.Getenv("WEIGHT_PATH"), predictor.Options{})
	if err != nil {
		t.Skipf("skipping: the real model is not available yet: %v", err)
	}
	dir := datatest.FashionMNISTDir(t)
	test, err := idx.LoadTest(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := min(accuracyImages, test.Images.N)
	if raceEnabled {
		n = min(20, n) // the race detector slows the real model many times over
	}
	info := clf.Info()

	// Direct: one batched Predict on the normalised pixels.
	x := make([]float32, n*modelfile.Pixels)
	for i := range n {
		info.Normalize(x[i*modelfile.Pixels:(i+1)*modelfile.Pixels], test.Images.Image(i))
	}
	probs, err := clf.Predict(x, n)
	if err != nil {
		t.Fatalf("Predict: %v", err)
	}
	direct := make([]int, n)
	for i := range n {
		direct[i] = eval.Argmax(probs[i*10 : (i+1)*10])
	}

	ts := startServer(t, Config{}, clf)

	// Through POST /v1/classify, one PNG per request, 8 clients at once so
	// the micro-batcher mixes requests into batches.
	viaPNG := make([]int, n)
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				g := &image.Gray{Pix: test.Images.Image(i), Stride: modelfile.Side, Rect: image.Rect(0, 0, modelfile.Side, modelfile.Side)}
				var buf bytes.Buffer
				if err := png.Encode(&buf, g); err != nil {
					t.Error(err)
					return
				}
				r := do(t, "POST", ts.url+"/v1/classify", "image/png", buf.Bytes())
				if r.code != 200 {
					t.Errorf("image %d: status %d: %s", i, r.code, r.body)
					viaPNG[i] = -1
					continue
				}
				res := decode[Result](t, r)
				viaPNG[i] = res.ClassID
				// Test-set images are dataset-like: the benchmark model
				// answers them, as the direct Predict above.
				if res.Model != info.Name {
					t.Errorf("image %d answered by %q, want %q", i, res.Model, info.Name)
				}
				if res.InDistribution == nil || res.OODScore == nil {
					t.Errorf("image %d: no in_distribution/ood_score in %s", i, r.body)
				} else if in, _ := predictor.For(clf, true).(oodPredictor).InDistribution(*res.OODScore); in != *res.InDistribution {
					t.Errorf("image %d: in_distribution %v for score %v", i, *res.InDistribution, *res.OODScore)
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()

	// Through the v2 protocol, 100 UINT8 images per request.
	viaV2 := make([]int, 0, n)
	for start := 0; start < n; start += 100 {
		end := min(start+100, n)
		var data strings.Builder
		for i := start; i < end; i++ {
			for j, p := range test.Images.Image(i) {
				if i > start || j > 0 {
					data.WriteByte(',')
				}
				fmt.Fprint(&data, p)
			}
		}
		body := fmt.Sprintf(`{"id":"acc","inputs":[{"name":"input_uint8","datatype":"UINT8","shape":[%d,28,28],"data":[%s]}]}`, end-start, data.String())
		r := do(t, "POST", ts.url+"/v2/models/fashion-mnist/infer", "application/json", []byte(body))
		if r.code != 200 {
			t.Fatalf("v2 infer: status %d: %.300s", r.code, r.body)
		}
		var resp V2InferResponse
		if err := json.Unmarshal(r.body, &resp); err != nil || len(resp.Outputs) != 3 || resp.Outputs[0].Name != v2Output {
			t.Fatalf("v2 infer answer: %v, %d outputs", err, len(resp.Outputs))
		}
		// The embedded model has an out-of-distribution detector: its
		// score is the second output, its verdict the third, one value
		// per image each.
		if o := resp.Outputs[1]; o.Name != v2OODOutput || len(o.Data) != end-start {
			t.Fatalf("v2 extra output %q with %d values for %d images", o.Name, len(o.Data), end-start)
		}
		det := predictor.For(clf, true).(oodPredictor)
		if o := resp.Outputs[2]; o.Name != v2InDistOutput || len(o.Bools) != end-start {
			t.Fatalf("v2 third output %q with %d values for %d images", o.Name, len(o.Bools), end-start)
		}
		// (The score is sent as float32; a flip at the threshold would
		// need a score within float32 rounding of it.)
		for i, sc := range resp.Outputs[1].Data {
			if in, _ := det.InDistribution(float64(sc)); in != resp.Outputs[2].Bools[i] {
				t.Fatalf("image %d: in_distribution %v for score %v", start+i, resp.Outputs[2].Bools[i], sc)
			}
		}
		out := resp.Outputs[0].Data
		for i := range end - start {
			viaV2 = append(viaV2, eval.Argmax(out[i*10:(i+1)*10]))
		}
	}

	correct := func(pred []int) (c int) {
		for i, p := range pred {
			if p == int(test.Labels[i]) {
				c++
			}
		}
		return c
	}
	differ := func(pred []int) (d int) {
		for i, p := range pred {
			if p != direct[i] {
				d++
			}
		}
		return d
	}
	cd, cp, cv := correct(direct), correct(viaPNG), correct(viaV2)
	t.Logf("accuracy on %d test images: direct %d (%.4f), PNG over HTTP %d, v2 UINT8 %d; predictions differing from direct: PNG %d, v2 %d",
		n, cd, float64(cd)/float64(n), cp, cv, differ(viaPNG), differ(viaV2))
	if cp != cd || cv != cd {
		t.Errorf("accuracy differs: direct %d/%d, PNG over HTTP %d/%d, v2 %d/%d", cd, n, cp, n, cv, n)
	}
	// Far below any trained model: inputs reach the model wrongly scaled.
	if float64(cd)/float64(n) < 0.5 {
		t.Errorf("direct accuracy %.3f is near chance: is the input normalised as the model card says?", float64(cd)/float64(n))
	}
}
