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
	m, ok := p.(logitModel)
	if !ok {
		return fmt.Errorf("-photos, -mnist and -reliability need one of our own model files")
	}
	info := p.Info()
	k := len(info.Classes)
	const px = modelfile.Pixels
	from := min(calibrationSplit, test.Images.N/2)
	rep := idx.Set{Images: idx.Images{N: test.Images.N - from, Rows: 28, Cols: 28, Pix: test.Images.Pix[from*px:]}, Labels: test.Labels[from:]}
	var probs []float32 // of the last score call
	score := func(pix []uint8) (logits []float32, scores []float64, err error) {
		n := len(pix) / px
		x := make([]float32, n*px)
		info.Normalize(x, pix)
		if logits, err = m.Logits(x, n); err != nil {
			return nil, nil, err
		}
		probs, scores, err = m.Scores(x, n)
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
	threshold := func(s float64) string {
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
			if threshold(s) == want {
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
		mp, err := imagefolder.ReadMappingFile(mappingBeside(e.photos), info.Classes)
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
		logits, scores, err := score(s.Pix)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "photos in %s (%d images), through the same conversion as predict:\n", e.photos, s.Len())
		fmt.Fprintf(w, "  %-12s %-22s %9s %8s %s\n", "folder", "classes", "right", "", "in_distribution / top answers")
		var exactRight, exactN int
		for fi, f := range mp.Folders {
			var n, good, in int
			said := map[string]int{}
			for i := range s.Len() {
				if s.Folder[i] != fi {
					continue
				}
				n++
				c := eval.Argmax(logits[i*k : (i+1)*k])
				said[info.Classes[c]]++
				if slices.Contains(f.Classes, c) {
					good++
				}
				if scores != nil && threshold(scores[i]) == "in" {
					in++
				}
			}
			names := "none"
			if f.Classes != nil {
				var parts []string
				for _, c := range f.Classes {
					parts = append(parts, info.Classes[c])
				}
				names = strings.Join(parts, "|")
			}
			inShare := "?"
			if scores != nil {
				inShare = fmt.Sprintf("%.0f%% in", 100*float64(in)/float64(max(n, 1)))
			}
			if f.Classes == nil {
				fmt.Fprintf(w, "  %-12s %-22.22s %9s %8s %s; says %s\n", f.Name, names, "-", "", inShare, topSaid(said, 3))
				continue
			}
			fmt.Fprintf(w, "  %-12s %-22.22s %4d/%-4d %7.1f%% %s\n", f.Name, names, good, n, 100*float64(good)/float64(max(n, 1)), inShare)
			if len(f.Classes) == 1 {
				exactRight += good
				exactN += n
			}
		}
		fmt.Fprintf(w, "  one-class folders together: %d/%d = %.1f%%\n", exactRight, exactN, 100*float64(exactRight)/float64(max(exactN, 1)))
		if e.grid != "" {
			var cells []chart.GridCell
			for fi, f := range mp.Folders {
				taken := 0
				for i := 0; i < s.Len() && taken < max(e.gridEach, 1); i++ {
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
					row := probs[i*k : (i+1)*k]
					c := eval.Argmax(row)
					caption := []string{"folder: " + f.Name, fmt.Sprintf("said: %s %.0f%%", info.Classes[c], 100*row[c])}
					if scores != nil {
						caption = append(caption, fmt.Sprintf("%s clothing (ood %.2f)", map[string]string{"in": "looks like", "out": "not like"}[threshold(scores[i])], scores[i]))
					}
					g := &image.Gray{Pix: s.Image(i), Stride: imageprep.Side, Rect: image.Rect(0, 0, imageprep.Side, imageprep.Side)}
					cells = append(cells, chart.GridCell{Photo: photo, Input: g, Caption: caption})
				}
			}
			if err := atomicfile.Write(e.grid, func(wr io.Writer) error { return chart.PhotoGridPNG(wr, cells, 4) }); err != nil {
				return err
			}
			fmt.Fprintf(w, "  photo grid (photo, what the model saw, what it said): %s\n", e.grid)
		}
	} else if e.grid != "" {
		return fmt.Errorf("-grid needs -photos")
	}
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
