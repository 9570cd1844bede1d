package main

import (
	"context"
	"fmt"
	"image"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/fashion-classifier/fashion/internal/atomicfile"
	"github.com/fashion-classifier/fashion/internal/chart"
	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/imagefolder"
	"github.com/fashion-classifier/fashion/internal/imageprep"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/ood"
	"github.com/fashion-classifier/fashion/internal/predictor"
)

// extraEval are eval's reports beyond accuracy on the test set.
type extraEval struct {
	photos      string // a photo split to report per folder
	mnist       string // MNIST directory for the out-of-distribution report
	reliability string // reliability-diagram PNG
	cacheDir    string
	grid        string // photo-grid PNG (with photos)
	gridEach    int    // photos per folder in the grid
}

// logitModel is a model that exposes raw logits and its calibration
// (modelfile.Classifier).
type logitModel interface {
	oodScorer
	Logits(x []float32, n int) ([]float32, error)
	Meta() modelfile.Meta
}

// run prints the extra reports for the images of test from index
// calibrationSplit on (the first are held out for calibration).
func (e extraEval) run(ctx context.Context, p predictor.Predictor, test idx.Set, w io.Writer) error {
	if e.photos == "" && e.mnist == "" && e.reliability == "" && e.grid == "" {
		return nil
	}
	// The Fashion-MNIST and MNIST reports are on dataset-like images: the
	// benchmark model's (all of p when it is one model).
	b := predictor.For(p, true)
	m, ok := b.(logitModel)
	if !ok {
		return fmt.Errorf("-photos, -mnist and -reliability need one of our own model files")
	}
	info := b.Info()
	k := len(info.Classes)
	const px = modelfile.Pixels
	from := min(calibrationSplit, test.Images.N/2)
	rep := idx.Set{Images: idx.Images{N: test.Images.N - from, Rows: 28, Cols: 28, Pix: test.Images.Pix[from*px:]}, Labels: test.Labels[from:]}
	score := func(pix []uint8) (logits []float32, scores []float64, err error) {
		n := len(pix) / px
		x := make([]float32, n*px)
		info.Normalize(x, pix)
		if logits, err = m.Logits(x, n); err != nil {
			return nil, nil, err
		}
		_, scores, err = m.Scores(x, n)
		return logits, scores, err
	}
	fmLogits, fmScores, err := score(rep.Images.Pix)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nFashion-MNIST test images %d–%d (not used for calibration):\n", from, test.Images.N-1)
	// Calibration.
	var right [][]int
	for _, l := range rep.Labels {
		right = append(right, []int{int(l)})
	}
	sc := eval.Scored{Logits: fmLogits, K: k, Right: right}
	t := m.Meta().Temperature
	if t == 0 {
		t = 1
	}
	c1, r1 := sc.Confidences(1)
	b1, ece1 := eval.Reliability(c1, r1, 15)
	ct, rt := sc.Confidences(t)
	bt, eceT := eval.Reliability(ct, rt, 15)
	fmt.Fprintf(w, "  expected calibration error (15 bins): %.4f before, %.4f after temperature scaling (T = %.4f)\n", ece1, eceT, t)
	if e.reliability != "" {
		curves := []chart.ReliabilityCurve{{Name: fmt.Sprintf("raw (ECE %.4f)", ece1), Bins: b1}, {Name: fmt.Sprintf("T = %.2f (ECE %.4f)", t, eceT), Bins: bt}}
		title := fmt.Sprintf("%s: reliability on Fashion-MNIST test images %d–%d", info.Name, from, test.Images.N-1)
		if err := atomicfile.Write(e.reliability, func(wr io.Writer) error { return chart.ReliabilityPNG(wr, curves, title) }); err != nil {
			return err
		}
		fmt.Fprintf(w, "  reliability diagram: %s\n", e.reliability)
	}
	threshold := func(m oodScorer, s float64) string {
		in, known := m.InDistribution(s)
		switch {
		case !known:
			return "?"
		case in:
			return "in"
		}
		return "out"
	}
	share := func(scores []float64, want string) float64 {
		n := 0
		for _, s := range scores {
			if threshold(m, s) == want {
				n++
			}
		}
		return float64(n) / float64(max(len(scores), 1))
	}
	if fmScores != nil {
		fmt.Fprintf(w, "  in_distribution=true: %.2f%% of %d (first 1,000: %.2f%%)\n", 100*share(fmScores, "in"), len(fmScores), 100*share(fmScores[:min(1000, len(fmScores))], "in"))
	}
	if e.mnist != "" {
		if fmScores == nil {
			return fmt.Errorf("-mnist: the model has no out-of-distribution detector (fashion calibrate adds one)")
		}
		mn, err := idx.LoadTest(e.mnist)
		if err != nil {
			return err
		}
		_, mnScores, err := score(mn.Images.Pix)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "MNIST test digits (%s):\n  in_distribution=false: %.2f%% of %d (first 1,000: %.2f%%); AUROC against the Fashion-MNIST images above %.4f\n",
			e.mnist, 100*share(mnScores, "out"), len(mnScores), 100*share(mnScores[:min(1000, len(mnScores))], "out"), ood.AUROC(fmScores, mnScores))
	}
	if e.photos != "" {
		return e.photoReport(ctx, p, w, threshold)
	}
	if e.grid != "" {
		return fmt.Errorf("-grid needs -photos")
	}
	return nil
}

// photoReport prints per-folder accuracy and out-of-distribution answers on
// the photo split e.photos, each photo answered by the model
// predictor.For picks for it (the photo model of a routed pair, unless a
// photo is dataset-like), as predict and the server answer it. A photo is
// right when the answering model's label is one of its folder's classes
// (by name, so models with different class lists compare).
func (e extraEval) photoReport(ctx context.Context, p predictor.Predictor, w io.Writer, threshold func(oodScorer, float64) string) error {
	photoInfo := predictor.For(p, false).Info()
	mp, err := imagefolder.ReadMappingFile(mappingBeside(e.photos), photoInfo.Classes)
	if err != nil {
		return err
	}
	cache := ""
	if e.cacheDir != "" {
		cache = e.cacheDir + "/cache-" + strings.ReplaceAll(strings.Trim(e.photos, "/"), "/", "_") + ".gob"
	}
	s, err := imagefolder.LoadCached(ctx, e.photos, mp, imageprep.Limits{}, cache)
	if err != nil {
		return err
	}
	const px = modelfile.Pixels
	n := s.Len()
	label, state, model := make([]string, n), make([]string, n), make([]string, n)
	conf, scoreOf := make([]float32, n), make([]float64, n)
	for _, a := range predictor.Models(p) {
		var ids []int
		for i := range n {
			if predictor.For(p, s.DatasetLike[i]) == a {
				ids = append(ids, i)
			}
		}
		if len(ids) == 0 {
			continue
		}
		det, ok := a.(oodScorer)
		if !ok {
			return fmt.Errorf("-photos needs our own model files; %s is not one", a.Info().Source)
		}
		info := a.Info()
		x := make([]float32, len(ids)*px)
		for j, i := range ids {
			info.Normalize(x[j*px:(j+1)*px], s.Image(i))
		}
		probs, scores, err := det.Scores(x, len(ids))
		if err != nil {
			return err
		}
		k := len(info.Classes)
		for j, i := range ids {
			row := probs[j*k : (j+1)*k]
			c := eval.Argmax(row)
			label[i], conf[i], model[i], state[i] = info.Classes[c], row[c], info.Name, "?"
			if scores != nil {
				state[i], scoreOf[i] = threshold(det, scores[j]), scores[j]
			}
		}
	}
	byModel := map[string]int{}
	for _, name := range model {
		byModel[name]++
	}
	fmt.Fprintf(w, "photos in %s (%d images), through the same conversion and routing as predict (answered by %s):\n", e.photos, n, topSaid(byModel, len(byModel)))
	fmt.Fprintf(w, "  %-12s %-22s %9s %8s %s\n", "folder", "classes", "right", "", "in_distribution / top answers")
	var exactRight, exactN int
	for fi, f := range mp.Folders {
		var names []string
		for _, c := range f.Classes {
			names = append(names, mp.Classes[c])
		}
		var total, good, in int
		said := map[string]int{}
		known := true
		for i := range n {
			if s.Folder[i] != fi {
				continue
			}
			total++
			said[label[i]]++
			if slices.Contains(names, label[i]) {
				good++
			}
			switch state[i] {
			case "in":
				in++
			case "?":
				known = false
			}
		}
		inShare := "?"
		if known {
			inShare = fmt.Sprintf("%.0f%% in", 100*float64(in)/float64(max(total, 1)))
		}
		if f.Classes == nil {
			fmt.Fprintf(w, "  %-12s %-22.22s %9s %8s %s; says %s\n", f.Name, "none", "-", "", inShare, topSaid(said, 3))
			continue
		}
		fmt.Fprintf(w, "  %-12s %-22.22s %4d/%-4d %7.1f%% %s\n", f.Name, strings.Join(names, "|"), good, total, 100*float64(good)/float64(max(total, 1)), inShare)
		if len(f.Classes) == 1 {
			exactRight += good
			exactN += total
		}
	}
	fmt.Fprintf(w, "  one-class folders together: %d/%d = %.1f%%\n", exactRight, exactN, 100*float64(exactRight)/float64(max(exactN, 1)))
	if e.grid == "" {
		return nil
	}
	var cells []chart.GridCell
	for fi, f := range mp.Folders {
		taken := 0
		for i := 0; i < n && taken < max(e.gridEach, 1); i++ {
			if s.Folder[i] != fi {
				continue
			}
			taken++
			data, err := os.ReadFile(s.Files[i])
			if err != nil {
				return err
			}
			photo, _, err := imageprep.Decode(data, imageprep.Limits{})
			if err != nil {
				return err
			}
			caption := []string{"folder: " + f.Name, fmt.Sprintf("said: %s %.0f%%", label[i], 100*conf[i])}
			if state[i] != "?" {
				caption = append(caption, fmt.Sprintf("%s clothing (ood %.2f)", map[string]string{"in": "looks like", "out": "not like"}[state[i]], scoreOf[i]))
			}
			g := &image.Gray{Pix: s.Image(i), Stride: imageprep.Side, Rect: image.Rect(0, 0, imageprep.Side, imageprep.Side)}
			cells = append(cells, chart.GridCell{Photo: photo, Input: g, Caption: caption})
		}
	}
	if err := atomicfile.Write(e.grid, func(wr io.Writer) error { return chart.PhotoGridPNG(wr, cells, 4) }); err != nil {
		return err
	}
	fmt.Fprintf(w, "  photo grid (photo, what the model saw, what it said): %s\n", e.grid)
	return nil
}

// topSaid lists the n most frequent answers as "Label×count".
func topSaid(said map[string]int, n int) string {
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range said {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int {
		if a.v != b.v {
			return b.v - a.v
		}
		return strings.Compare(a.k, b.k)
	})
	var parts []string
	for i := 0; i < len(all) && i < n; i++ {
		parts = append(parts, fmt.Sprintf("%s×%d", all[i].k, all[i].v))
	}
	return strings.Join(parts, ", ")
}
