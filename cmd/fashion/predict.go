package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/fashion-classifier/fashion/internal/atomicfile"
	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/fetch"
	"github.com/fashion-classifier/fashion/internal/imageprep"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/predictor"
	"github.com/fashion-classifier/fashion/internal/safefile"
)

// prediction is one file's result, shaped like the service's JSON.
type prediction struct {
	File       string  `json:"file"`
	Label      string  `json:"label,omitempty"`
	ClassID    int     `json:"class_id"`
	Confidence float32 `json:"confidence"`
	Top        []topK  `json:"top,omitempty"`
	// InDistribution and OODScore are the model's out-of-distribution
	// answer (absent for models without a detector): whether the image
	// looks like the training data, and the score behind it (higher is
	// less like it; the threshold is in the model file).
	InDistribution *bool    `json:"in_distribution,omitempty"`
	OODScore       *float64 `json:"ood_score,omitempty"`
	// Model is the serving name of the model that answered: with the
	// embedded models, fashion-mnist for dataset-like images and
	// fashion-photos for photos (predictor.Routed).
	Model string `json:"model,omitempty"`
	Error string `json:"error,omitempty"`
}

type topK struct {
	Label       string  `json:"label"`
	ClassID     int     `json:"class_id"`
	Probability float32 `json:"probability"`
}

// predictChunk is how many images predict decodes and classifies at a
// time, so a directory of any size needs memory for one chunk only.
const predictChunk = 256

// imageExts are the file name extensions a directory argument contributes.
var imageExts = []string{".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"}

func runPredict(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("predict", stderr)
	models := addModelFlags(fs).addTTAFlag(fs)
	top := fs.Int("top", 3, "how many classes to list per image: 1 to the model's number of classes")
	asJSON := fs.Bool("json", false, "print JSON lines instead of a table")
	asCSV := fs.Bool("csv", false, "print CSV (file,rank,label,class_id,probability,in_distribution,error; one row per listed class) instead of a table")
	showDir := fs.String("save-input", "", "write the 28×28 image the model saw for each file into this directory (enlarged ×8)")
	maxPixels := fs.Int("max-pixels", imageprep.DefaultMaxPixels, "refuse images with more pixels than this")
	maxBytes := fs.Int64("max-bytes", imageprep.DefaultMaxBytes, "refuse files, downloads and standard input larger than this many bytes")
	var cidrs prefixList
	fs.Var(&cidrs, "allow-fetch-cidr", "allow fetching URLs from this address `range` even if private, e.g. 127.0.0.1 (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: fashion predict [flags] IMAGE|DIR|URL|- ...

Classifies PNG, JPEG, GIF, WebP or BMP images: files, every image file
(by extension) directly inside a directory, http(s) URLs (fetched under
the server's safe-fetch policy: public addresses only unless
-allow-fetch-cidr) and "-" for standard input. Photos are converted the way
Fashion-MNIST was made (trim, resize, sharpen, centre, negate); see
internal/imageprep.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no images given")
	}
	if *asJSON && *asCSV {
		return errors.New("-json and -csv are exclusive: choose one output format")
	}
	if *maxBytes <= 0 {
		return fmt.Errorf("-max-bytes %d: must be positive", *maxBytes)
	}
	inputs, err := expandInputs(fs.Args())
	if err != nil {
		return err
	}
	m, err := models.open(ctx)
	if err != nil {
		return err
	}
	// The API answers 400 for such a top_k; so does predict, before any work.
	if k := maxClasses(m); *top < 1 || *top > k {
		return fmt.Errorf("-top %d: want an integer from 1 to %d (the model's number of classes)", *top, k)
	}
	src := &imageSource{
		fetch:    fetch.New(fetch.Policy{AllowCIDRs: cidrs, MaxBytes: *maxBytes}),
		maxBytes: *maxBytes,
		limits:   imageprep.Limits{MaxPixels: *maxPixels},
		stdin:    os.Stdin,
	}
	out := newPredictionWriter(stdout, *asJSON, *asCSV)
	failed, total := 0, 0
	for start := 0; start < len(inputs); start += predictChunk {
		chunk := inputs[start:min(start+predictChunk, len(inputs))]
		results, err := classifyInputs(ctx, m, src, chunk, *top, *showDir)
		if err != nil {
			return err
		}
		for _, r := range results {
			total++
			if r.Error != "" {
				failed++
			}
			if err := out.write(r); err != nil {
				return fmt.Errorf("writing results: %w", err)
			}
		}
	}
	if err := out.flush(); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d images could not be classified", failed, total)
	}
	return nil
}

// input is one image argument after expansion: a file path, a URL, or "-"
// for standard input. err is set for an argument that names nothing
// classifiable (an empty directory), reported in its result row.
type input struct {
	name string
	err  error
}

// expandInputs turns the arguments into inputs: a directory becomes its
// image files (by extension, sorted, not recursive), anything else stays
// as it is. Standard input may be named once.
func expandInputs(args []string) ([]input, error) {
	var out []input
	stdin := false
	for _, a := range args {
		switch {
		case a == "-":
			if stdin {
				return nil, errors.New(`"-" (standard input) given more than once`)
			}
			stdin = true
			out = append(out, input{name: a})
		case isURL(a):
			out = append(out, input{name: a})
		default:
			fi, err := os.Stat(a)
			if err != nil || !fi.IsDir() {
				out = append(out, input{name: a}) // errors are reported in the file's row
				continue
			}
			entries, err := os.ReadDir(a)
			if err != nil {
				out = append(out, input{name: a, err: err})
				continue
			}
			n := 0
			for _, e := range entries {
				if e.Type().IsRegular() && slices.Contains(imageExts, strings.ToLower(filepath.Ext(e.Name()))) {
					out = append(out, input{name: filepath.Join(a, e.Name())})
					n++
				}
			}
			if n == 0 {
				out = append(out, input{name: a, err: fmt.Errorf("directory holds no image files (%s)", strings.Join(imageExts, " "))})
			}
		}
	}
	return out, nil
}

// isURL reports whether an argument is an http or https URL.
func isURL(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// imageSource reads the bytes of inputs, each bounded by maxBytes.
type imageSource struct {
	fetch    *fetch.Client
	maxBytes int64
	limits   imageprep.Limits
	stdin    io.Reader
}

// read returns the encoded image an input names.
func (s *imageSource) read(ctx context.Context, in input) ([]byte, error) {
	if in.err != nil {
		return nil, in.err
	}
	if isURL(in.name) {
		res, err := s.fetch.Get(ctx, in.name)
		if err != nil {
			return nil, err
		}
		return res.Body, nil
	}
	if in.name != "-" {
		// Not os.Open: a FIFO would block it, a device never end.
		return safefile.ReadFile(ctx, in.name, s.maxBytes)
	}
	data, err := io.ReadAll(io.LimitReader(s.stdin, s.maxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > s.maxBytes {
		return nil, fmt.Errorf("larger than the %d-byte limit (-max-bytes)", s.maxBytes)
	}
	return data, nil
}

// maxClasses is the most classes any model of m has: the largest -top.
func maxClasses(m predictor.Predictor) int {
	k := 0
	for _, a := range predictor.Models(m) {
		k = max(k, len(a.Info().Classes))
	}
	return k
}

// classifyInputs reads, converts and classifies one chunk of inputs, one
// result per input in order; a failing input gets an error result. Each
// image is answered by the model predictor.For picks for it (with the
// embedded models: the benchmark model for dataset-like images, the photo
// model for photos), a ranking of at most that model's classes.
func classifyInputs(ctx context.Context, m predictor.Predictor, src *imageSource, inputs []input, top int, showDir string) ([]prediction, error) {
	results := make([]prediction, len(inputs))
	imgs := make([]imageprep.Input, len(inputs))
	byModel := map[predictor.Predictor][]int{} // indexes into results of the images each model answers
	for i, in := range inputs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		results[i] = prediction{File: in.name, ClassID: -1}
		g, err := prepareInput(ctx, src, in)
		if err != nil {
			results[i].Error = err.Error()
			continue
		}
		imgs[i] = g
		a := predictor.For(m, g.DatasetLike)
		byModel[a] = append(byModel[a], i)
		if showDir != "" {
			if err := saveInput(showDir, in.name, g.Gray); err != nil {
				return nil, err
			}
		}
	}
	for _, a := range predictor.Models(m) {
		if ids := byModel[a]; len(ids) > 0 {
			if err := answer(a, imgs, ids, top, results); err != nil {
				return nil, err
			}
		}
	}
	return results, nil
}

// answer runs model a on the images imgs[i] for i in ids and fills in
// results[i].
func answer(a predictor.Predictor, imgs []imageprep.Input, ids []int, top int, results []prediction) error {
	info := a.Info()
	x := make([]float32, len(ids)*modelfile.Pixels)
	for j, i := range ids {
		info.Normalize(x[j*modelfile.Pixels:(j+1)*modelfile.Pixels], imgs[i].Pix)
	}
	var (
		probs  []float32
		scores []float64
		err    error
	)
	det, hasOOD := a.(oodScorer)
	if hasOOD {
		probs, scores, err = det.Scores(x, len(ids))
	} else {
		probs, err = a.Predict(x, len(ids))
	}
	if err != nil {
		return err
	}
	k := len(info.Classes)
	for j, i := range ids {
		row := probs[j*k : (j+1)*k]
		r := &results[i]
		r.Model = info.Name
		if scores != nil {
			if in, known := det.InDistribution(scores[j]); known {
				s := scores[j]
				r.InDistribution, r.OODScore = &in, &s
			}
		}
		for _, c := range eval.TopK(row, min(top, k)) {
			r.Top = append(r.Top, topK{Label: info.Classes[c], ClassID: c, Probability: row[c]})
		}
		r.Label, r.ClassID, r.Confidence = r.Top[0].Label, r.Top[0].ClassID, r.Top[0].Probability
	}
	return nil
}

// oodScorer is a model with an out-of-distribution detector
// (modelfile.Classifier).
type oodScorer interface {
	Scores(x []float32, n int) ([]float32, []float64, error)
	InDistribution(score float64) (in, ok bool)
}

// prepareInput reads an input and converts it to the model's input.
func prepareInput(ctx context.Context, src *imageSource, in input) (imageprep.Input, error) {
	data, err := src.read(ctx, in)
	if err != nil {
		return imageprep.Input{}, err
	}
	return imageprep.Prepare(data, src.limits)
}

// saveInput writes the model's view of an input, enlarged, into dir.
func saveInput(dir, name string, g *image.Gray) error {
	base := "stdin"
	if name != "-" {
		base = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
		if isURL(name) {
			base = "url-" + base
		}
	}
	out := filepath.Join(dir, base+"-input.png")
	return atomicfile.Write(out, func(w io.Writer) error { return png.Encode(w, imageprep.Enlarge(g, 8)) })
}

// predictionWriter prints results as a table, JSON lines or CSV.
type predictionWriter struct {
	w      io.Writer
	json   *json.Encoder
	csv    *csv.Writer
	header bool
}

func newPredictionWriter(w io.Writer, asJSON, asCSV bool) *predictionWriter {
	p := &predictionWriter{w: w}
	switch {
	case asJSON:
		p.json = json.NewEncoder(w)
	case asCSV:
		p.csv = csv.NewWriter(w)
	}
	return p
}

func (p *predictionWriter) write(r prediction) error {
	switch {
	case p.json != nil:
		return p.json.Encode(r)
	case p.csv != nil:
		if !p.header {
			p.header = true
			if err := p.csv.Write([]string{"file", "rank", "label", "class_id", "probability", "in_distribution", "error"}); err != nil {
				return err
			}
		}
		if r.Error != "" {
			return p.csv.Write([]string{r.File, "", "", "", "", "", r.Error})
		}
		for i, t := range r.Top {
			in := "" // unknown: the model has no out-of-distribution detector
			if r.InDistribution != nil {
				in = strconv.FormatBool(*r.InDistribution)
			}
			row := []string{r.File, strconv.Itoa(i + 1), t.Label, strconv.Itoa(t.ClassID), strconv.FormatFloat(float64(t.Probability), 'f', 6, 32), in, ""}
			if err := p.csv.Write(row); err != nil {
				return err
			}
		}
		return nil
	}
	if r.Error != "" {
		_, err := fmt.Fprintf(p.w, "%s\terror: %s\n", r.File, r.Error)
		return err
	}
	parts := make([]string, len(r.Top))
	for i, t := range r.Top {
		parts[i] = fmt.Sprintf("%s %.1f%%", t.Label, 100*t.Probability)
	}
	verdict := ""
	if r.InDistribution != nil && !*r.InDistribution {
		verdict = "\tnot sure: doesn't look like clothing"
	}
	_, err := fmt.Fprintf(p.w, "%s\t%s%s\n", r.File, strings.Join(parts, ", "), verdict)
	return err
}

func (p *predictionWriter) flush() error {
	if p.csv != nil {
		p.csv.Flush()
		return p.csv.Error()
	}
	return nil
}
