package eval

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
)

// pair is one (truth, prediction) sample.
type pair struct{ truth, pred int }

func TestReport(t *testing.T) {
	tests := []struct {
		name    string
		classes []string
		samples []pair
		want    Report
	}{
		{
			name:    "no classes",
			classes: nil,
			want:    Report{PerClass: []ClassReport{}, Confusion: [][]int{}},
		},
		{
			name:    "classes but no samples",
			classes: []string{"a", "b"},
			want: Report{
				PerClass:  []ClassReport{{Class: "a"}, {Class: "b"}},
				Confusion: [][]int{{0, 0}, {0, 0}},
			},
		},
		{
			name:    "perfect",
			classes: []string{"a", "b"},
			samples: []pair{{0, 0}, {1, 1}, {1, 1}},
			want: Report{
				Accuracy: 1, Correct: 3, N: 3, MacroF1: 1,
				PerClass: []ClassReport{
					{Class: "a", Precision: 1, Recall: 1, F1: 1, Support: 1},
					{Class: "b", Precision: 1, Recall: 1, F1: 1, Support: 2},
				},
				Confusion: [][]int{{1, 0}, {0, 2}},
			},
		},
		{
			// Rows: a=[2 1 0], b=[0 3 0], c=[1 1 0]; column sums 3, 5, 0.
			// c is never predicted, so its precision is 0/0 → 0.
			name:    "class never predicted",
			classes: []string{"a", "b", "c"},
			samples: []pair{{0, 0}, {0, 0}, {0, 1}, {1, 1}, {1, 1}, {1, 1}, {2, 0}, {2, 1}},
			want: Report{
				Accuracy: 5.0 / 8, Correct: 5, N: 8,
				MacroF1: (2.0/3 + 0.75 + 0) / 3,
				PerClass: []ClassReport{
					{Class: "a", Precision: 2.0 / 3, Recall: 2.0 / 3, F1: 2.0 / 3, Support: 3},
					{Class: "b", Precision: 3.0 / 5, Recall: 1, F1: 0.75, Support: 3},
					{Class: "c", Precision: 0, Recall: 0, F1: 0, Support: 2},
				},
				Confusion: [][]int{{2, 1, 0}, {0, 3, 0}, {1, 1, 0}},
			},
		},
		{
			// A class with no true samples but some predictions: recall 0/0 → 0,
			// precision 0/1 = 0.
			name:    "class with no support",
			classes: []string{"a", "b"},
			samples: []pair{{0, 0}, {0, 1}},
			want: Report{
				Accuracy: 0.5, Correct: 1, N: 2,
				MacroF1: (2.0 / 3) / 2,
				PerClass: []ClassReport{
					{Class: "a", Precision: 1, Recall: 0.5, F1: 2.0 / 3, Support: 2},
					{Class: "b", Precision: 0, Recall: 0, F1: 0, Support: 0},
				},
				Confusion: [][]int{{1, 1}, {0, 0}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConfusion(tt.classes)
			for _, s := range tt.samples {
				c.Add(s.truth, s.pred)
			}
			if got := c.Total(); got != len(tt.samples) {
				t.Errorf("Total() = %d, want %d", got, len(tt.samples))
			}
			got := c.Report()
			if !reportsClose(got, tt.want) {
				t.Errorf("Report() =\n%+v\nwant\n%+v", got, tt.want)
			}
			// Every figure must survive JSON encoding (no NaN or Inf).
			if _, err := json.Marshal(got); err != nil {
				t.Errorf("json.Marshal(report): %v", err)
			}
		})
	}
}

// reportsClose reports whether two reports are equal, comparing the float
// figures with a small tolerance.
func reportsClose(a, b Report) bool {
	const eps = 1e-12
	near := func(x, y float64) bool { return math.Abs(x-y) <= eps }
	if !near(a.Accuracy, b.Accuracy) || a.Correct != b.Correct || a.N != b.N || !near(a.MacroF1, b.MacroF1) {
		return false
	}
	if len(a.PerClass) != len(b.PerClass) || len(a.Confusion) != len(b.Confusion) {
		return false
	}
	for i, x := range a.PerClass {
		y := b.PerClass[i]
		if x.Class != y.Class || x.Support != y.Support || !near(x.Precision, y.Precision) || !near(x.Recall, y.Recall) || !near(x.F1, y.F1) {
			return false
		}
	}
	for i := range a.Confusion {
		if !slices.Equal(a.Confusion[i], b.Confusion[i]) {
			return false
		}
	}
	return true
}

func TestReportIsACopy(t *testing.T) {
	c := NewConfusion([]string{"a", "b"})
	c.Add(0, 1)
	r := c.Report()
	c.Add(0, 1)
	if r.Confusion[0][1] != 1 {
		t.Errorf("report matrix changed with the confusion matrix: got %d, want 1", r.Confusion[0][1])
	}
	classes := []string{"x"}
	c = NewConfusion(classes)
	classes[0] = "changed"
	if c.Classes[0] != "x" {
		t.Errorf("NewConfusion kept the caller's slice: class 0 = %q", c.Classes[0])
	}
}

func TestReportJSONFields(t *testing.T) {
	c := NewConfusion([]string{"a"})
	c.Add(0, 0)
	b, err := json.Marshal(c.Report())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"accuracy", "correct", "n", "macro_f1", "per_class", "confusion"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON report lacks %q: %s", k, b)
		}
	}
	pc := m["per_class"].([]any)[0].(map[string]any)
	for _, k := range []string{"class", "precision", "recall", "f1", "support"} {
		if _, ok := pc[k]; !ok {
			t.Errorf("JSON per-class entry lacks %q: %s", k, b)
		}
	}
}

func TestAddOutOfRangePanics(t *testing.T) {
	for _, p := range []pair{{-1, 0}, {0, -1}, {2, 0}, {0, 2}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Add(%d, %d) on 2 classes did not panic", p.truth, p.pred)
				}
			}()
			NewConfusion([]string{"a", "b"}).Add(p.truth, p.pred)
		}()
	}
}

func TestWriteText(t *testing.T) {
	c := NewConfusion([]string{"a", "bb", "T-shirt/top"})
	for _, s := range []pair{{0, 0}, {0, 0}, {0, 1}, {1, 1}, {1, 1}, {1, 1}, {2, 0}, {2, 1}} {
		c.Add(s.truth, s.pred)
	}
	var buf bytes.Buffer
	if err := c.Report().WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	table, matrix, ok := strings.Cut(out, "\nconfusion matrix")
	if !ok {
		t.Fatalf("output has no confusion matrix section:\n%s", out)
	}
	wantLines := []string{
		"           a     0.6667     0.6667     0.6667        3",
		"          bb     0.6000     1.0000     0.7500        3",
		" T-shirt/top     0.0000     0.0000     0.0000        2",
		"    accuracy                           0.6250        8",
		"   macro avg     0.4222     0.5556     0.4722        8",
		"weighted avg     0.4750     0.6250     0.5312        8",
	}
	for _, l := range wantLines {
		if !strings.Contains(table, l+"\n") {
			t.Errorf("report lacks line %q:\n%s", l, out)
		}
	}
	// The table is aligned: every non-blank line has the same width.
	var width int
	for _, l := range strings.Split(strings.TrimRight(table, "\n"), "\n") {
		if l == "" {
			continue
		}
		if width == 0 {
			width = len(l)
		} else if len(l) != width {
			t.Errorf("line %q has width %d, want %d", l, len(l), width)
		}
	}
	wantMatrix := []string{
		"               0  1  2",
		"0 a            2  1  0",
		"1 bb           0  3  0",
		"2 T-shirt/top  1  1  0",
	}
	for _, l := range wantMatrix {
		if !strings.Contains(matrix, "\n"+l+"\n") {
			t.Errorf("matrix lacks line %q:\n%s", l, matrix)
		}
	}
}

func TestWriteTextEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := NewConfusion(nil).Report().WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); strings.Contains(out, "NaN") || !strings.Contains(out, "(no classes)") {
		t.Errorf("empty report output unexpected:\n%s", out)
	}
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errTest }

var errTest = &testError{}

type testError struct{}

func (*testError) Error() string { return "test write failure" }

func TestWriteTextError(t *testing.T) {
	c := NewConfusion([]string{"a"})
	c.Add(0, 0)
	if err := c.Report().WriteText(failWriter{}); err == nil {
		t.Error("WriteText to a failing writer returned nil error")
	}
}

func TestArgmax(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		row  []float32
		want int
	}{
		{nil, -1},
		{[]float32{3}, 0},
		{[]float32{1, 5, 2}, 1},
		{[]float32{-3, -1, -2}, 1},
		{[]float32{2, 7, 7}, 1}, // first of ties
		{[]float32{nan, 1, 2}, 2},
		{[]float32{1, nan, 0}, 0},
		{[]float32{nan, nan}, 0},
		{[]float32{float32(math.Inf(-1)), -1e38}, 1},
	}
	for _, tt := range tests {
		if got := Argmax(tt.row); got != tt.want {
			t.Errorf("Argmax(%v) = %d, want %d", tt.row, got, tt.want)
		}
	}
}

func TestTopK(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		name  string
		probs []float32
		k     int
		want  []int
	}{
		{"ordering", []float32{0.1, 0.5, 0.15, 0.25}, 3, []int{1, 3, 2}},
		{"k equals len", []float32{0.1, 0.5, 0.4}, 3, []int{1, 2, 0}},
		{"k greater than len", []float32{0.3, 0.7}, 5, []int{1, 0}},
		{"k zero", []float32{0.3, 0.7}, 0, []int{}},
		{"k negative", []float32{0.3, 0.7}, -2, []int{}},
		{"empty", nil, 3, []int{}},
		{"ties keep lower id first", []float32{0.2, 0.3, 0.2, 0.3}, 4, []int{1, 3, 0, 2}},
		{"all equal", []float32{0.25, 0.25, 0.25, 0.25}, 2, []int{0, 1}},
		{"NaN last", []float32{nan, 0.1, nan, 0.9}, 4, []int{3, 1, 0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := TopK(tt.probs, tt.k)
			if !slices.Equal(got, tt.want) {
				t.Errorf("TopK(%v, %d) = %v, want %v", tt.probs, tt.k, got, tt.want)
			}
		})
	}
}

func TestTopKDoesNotModifyInput(t *testing.T) {
	probs := []float32{0.1, 0.9, 0.5}
	TopK(probs, 2)
	if !slices.Equal(probs, []float32{0.1, 0.9, 0.5}) {
		t.Errorf("TopK modified its input: %v", probs)
	}
}

func TestSoftmax(t *testing.T) {
	inf := float32(math.Inf(1))
	tests := []struct {
		name   string
		logits []float32
		want   []float32
	}{
		{"empty", nil, nil},
		{"single", []float32{-4}, []float32{1}},
		{"uniform", []float32{2, 2, 2, 2}, []float32{0.25, 0.25, 0.25, 0.25}},
		{"two", []float32{0, float32(math.Log(3))}, []float32{0.25, 0.75}},
		// exp(1000) overflows float32 and float64; subtracting the max keeps
		// the result exact. 1/(1+e) = 0.26894142.
		{"large", []float32{1000, 1001}, []float32{0.26894142, 0.73105858}},
		{"very large", []float32{3e38, 3e38}, []float32{0.5, 0.5}},
		{"very negative", []float32{-1e4, -1e4 - 1}, []float32{0.73105858, 0.26894142}},
		{"dominant", []float32{0, 200}, []float32{0, 1}},
		{"plus inf", []float32{1, inf, inf}, []float32{0, 0.5, 0.5}},
		{"all minus inf", []float32{-inf, -inf}, []float32{0.5, 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make([]float32, len(tt.logits))
			Softmax(got, tt.logits)
			for i := range got {
				if math.Abs(float64(got[i]-tt.want[i])) > 1e-6 {
					t.Errorf("Softmax(%v) = %v, want %v", tt.logits, got, tt.want)
					break
				}
			}
		})
	}
}

func TestSoftmaxInPlace(t *testing.T) {
	x := []float32{1, 2, 3}
	Softmax(x, x)
	want := []float32{0.09003057, 0.24472847, 0.66524096}
	for i := range x {
		if math.Abs(float64(x[i]-want[i])) > 1e-6 {
			t.Fatalf("in-place Softmax = %v, want %v", x, want)
		}
	}
}

func TestSoftmaxLengthMismatchPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Softmax with mismatched lengths did not panic")
		}
	}()
	Softmax(make([]float32, 2), make([]float32, 3))
}

// FuzzSoftmaxTopK checks that, for any finite logits, Softmax yields a
// probability distribution and TopK and Argmax agree with it.
func FuzzSoftmaxTopK(f *testing.F) {
	f.Add([]byte{})
	f.Add(floatBytes(1, 2, 3))
	f.Add(floatBytes(1e38, -1e38, 0, 5))
	f.Add(floatBytes(-80, -80, -80))
	f.Fuzz(func(t *testing.T, data []byte) {
		var logits []float32
		for len(data) >= 4 {
			v := math.Float32frombits(binary.LittleEndian.Uint32(data))
			data = data[4:]
			if !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) {
				logits = append(logits, v)
			}
		}
		p := make([]float32, len(logits))
		Softmax(p, logits)
		var sum float64
		for i, v := range p {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("Softmax(%v)[%d] = %v, not in [0,1]", logits, i, v)
			}
			sum += float64(v)
		}
		if len(p) > 0 && math.Abs(sum-1) > 1e-4 {
			t.Fatalf("Softmax(%v) sums to %v", logits, sum)
		}
		top := TopK(p, len(p))
		if len(top) != len(p) {
			t.Fatalf("TopK returned %d ids for %d probabilities", len(top), len(p))
		}
		for i := 1; i < len(top); i++ {
			if p[top[i]] > p[top[i-1]] {
				t.Fatalf("TopK(%v) = %v not in descending order", p, top)
			}
		}
		if len(logits) > 0 && logits[Argmax(logits)] != logits[top[0]] && p[Argmax(logits)] != p[top[0]] {
			t.Fatalf("Argmax(logits)=%d disagrees with TopK(softmax)[0]=%d", Argmax(logits), top[0])
		}
	})
}

// floatBytes encodes values as little-endian float32 bytes for fuzz seeds.
func floatBytes(vs ...float32) []byte {
	b := make([]byte, 0, 4*len(vs))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}
