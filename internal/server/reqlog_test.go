package server

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// readLog parses a request log file.
func readLog(t *testing.T, path string) []RequestLogEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []RequestLogEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e RequestLogEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Bytes())
		}
		if strings.Contains(sc.Text(), "data:image") {
			t.Errorf("log line carries image bytes without RequestLogInputs: %.200s", sc.Text())
		}
		out = append(out, e)
	}
	return out
}

func TestRequestLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "requests.jsonl")
	fake := newFake()
	ts := startServer(t, Config{RequestLog: path}, fake)
	img, pix := testImage(t, 200)
	r := do(t, "POST", ts.url+"/v1/classify", "image/png", img)
	if r.code != http.StatusOK {
		t.Fatal(r.code, string(r.body))
	}
	v2 := do(t, "POST", ts.url+"/v2/models/fashion-mnist/infer", "application/json", v2UINT8Body([][]uint8{pix, pix}))
	if v2.code != http.StatusOK {
		t.Fatal(v2.code, string(v2.body))
	}
	do(t, "GET", ts.url+"/v1/model", "", nil) // no inference, no line
	if err := ts.stop(t); err != nil {
		t.Fatal(err)
	}
	log := readLog(t, path)
	if len(log) != 2 {
		t.Fatalf("%d log lines, want 2: %+v", len(log), log)
	}
	want := fakeLabel(expectedClass(pix))
	for i, e := range log {
		if e.ID == "" || e.Model != "fashion-mnist" || e.Version != "1" || e.Protocol != "rest" || e.LatencyMS <= 0 || e.QueueMS < 0 || e.Time.IsZero() {
			t.Errorf("line %d: %+v", i, e)
		}
		if len(e.TopClass) != e.Images || len(e.Confidence) != e.Images || e.TopClass[0] != want || e.Confidence[0] != 0.55 {
			t.Errorf("line %d: top %v confidence %v for %d images, want %s at 0.55", i, e.TopClass, e.Confidence, e.Images, want)
		}
		if len(e.Inputs) != 0 {
			t.Errorf("line %d has inputs without RequestLogInputs", i)
		}
	}
	if log[1].Images != 2 {
		t.Errorf("v2 line: %d images, want 2", log[1].Images)
	}
}

func fakeLabel(c int) string { return newFake().info.Classes[c] }

func TestRequestLogSampleAndInputs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "requests.jsonl")
	ts := startServer(t, Config{RequestLog: path, RequestLogSample: 0.25}, newFake())
	img, _ := testImage(t, 50)
	const n = 400
	for range n {
		if r := do(t, "POST", ts.url+"/v1/classify", "image/png", img); r.code != http.StatusOK {
			t.Fatal(r.code)
		}
	}
	m := string(do(t, "GET", ts.url+"/metrics", "", nil).body)
	for _, line := range []string{
		`fashion_model_request_duration_seconds_count{model="fashion-mnist",protocol="rest",version="1"} 400`,
		`fashion_model_queue_duration_seconds_count{model="fashion-mnist",version="1"} 400`,
	} {
		if !strings.Contains(m, line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	ts.stop(t)
	// Binomial(400, 0.25): mean 100, sd 8.7; [50, 150] fails once in ~10^8.
	if got := len(readLog(t, path)); got < 50 || got > 150 {
		t.Errorf("%d of %d requests logged at sample 0.25", got, n)
	}

	path2 := filepath.Join(t.TempDir(), "requests.jsonl")
	ts2 := startServer(t, Config{RequestLog: path2, RequestLogInputs: true}, newFake())
	if r := do(t, "POST", ts2.url+"/v1/classify", "image/png", img); r.code != http.StatusOK {
		t.Fatal(r.code)
	}
	ts2.stop(t)
	data, _ := os.ReadFile(path2)
	if !strings.Contains(string(data), `"inputs":["data:image/png;base64,`) {
		t.Errorf("RequestLogInputs: no input image in %s", data)
	}
	for _, bad := range []float64{-0.1, 1.5} {
		if _, err := New(Config{RequestLog: path, RequestLogSample: bad}, newFake(), nil); err == nil {
			t.Errorf("sample %v accepted", bad)
		}
	}
}

// oodFake is the fake model with an out-of-distribution detector: an image
// is in distribution when its first pixel is dark.
type oodFake struct{ *fakePredictor }

func (oodFake) HasOOD() bool { return true }

func (o oodFake) Scores(x []float32, n int) ([]float32, []float64, error) {
	p, err := o.Predict(x, n)
	scores := make([]float64, n)
	for i := range n {
		scores[i] = float64(x[i*modelfile.Pixels])
	}
	return p, scores, err
}

func (oodFake) InDistribution(score float64) (bool, bool) { return score < 0, true }

func TestRequestLogInDistribution(t *testing.T) {
	path := filepath.Join(t.TempDir(), "requests.jsonl")
	ts := startServer(t, Config{RequestLog: path}, oodFake{newFake()})
	_, dark := testImage(t, 200) // black border: first pixel 0, in distribution
	light := make([]uint8, modelfile.Pixels)
	for i := range light {
		light[i] = 255
	}
	r := do(t, "POST", ts.url+"/v2/models/fashion-mnist/infer", "application/json", v2UINT8Body([][]uint8{dark, light}))
	if r.code != http.StatusOK {
		t.Fatal(r.code, string(r.body))
	}
	ts.stop(t)
	log := readLog(t, path)
	if len(log) != 1 || len(log[0].InDistribution) != 2 || !log[0].InDistribution[0] || log[0].InDistribution[1] {
		t.Errorf("in_distribution in the log: %+v, want [true false]", log)
	}
}
