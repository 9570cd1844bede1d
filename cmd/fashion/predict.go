package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fashion-classifier/fashion/internal/atomicfile"
	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/imageprep"
	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// prediction is one file's result, shaped like the service's JSON.
type prediction struct {
	File       string  `json:"file"`
	Label      string  `json:"label,omitempty"`
	ClassID    int     `json:"class_id"`
	Confidence float32 `json:"confidence"`
	Top        []topK  `json:"top,omitempty"`
	Error      string  `json:"error,omitempty"`
}

type topK struct {
	Label       string  `json:"label"`
	ClassID     int     `json:"class_id"`
	Probability float32 `json:"probability"`
}

func runPredict(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("predict", stderr)
	models := addModelFlags(fs)
	top := fs.Int("top", 3, "how many classes to list per image")
	asJSON := fs.Bool("json", false, "print JSON lines instead of a table")
	showDir := fs.String("save-input", "", "write the 28×28 image the model saw for each file into this directory (enlarged ×8)")
	maxPixels := fs.Int("max-pixels", imageprep.DefaultMaxPixels, "refuse images with more pixels than this")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fashion predict [flags] IMAGE...\n\nClassifies PNG, JPEG, GIF, WebP or BMP files. Photos are converted the way\nFashion-MNIST was made (trim, resize, sharpen, centre, negate); see internal/imageprep.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no image files given")
	}
	m, err := models.open()
	if err != nil {
		return err
	}
	info := m.Info()
	var results []prediction
	var inputs []float32
	var ok []int // indexes into results of the images that decoded
	for _, name := range fs.Args() {
		res := prediction{File: name, ClassID: -1}
		g, err := prepareFile(name, *maxPixels)
		if err != nil {
			res.Error = err.Error()
		} else {
			x := make([]float32, modelfile.Pixels)
			info.Normalize(x, g.Pix)
			inputs = append(inputs, x...)
			ok = append(ok, len(results))
			if *showDir != "" {
				out := filepath.Join(*showDir, strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))+"-input.png")
				if err := atomicfile.Write(out, func(w io.Writer) error { return png.Encode(w, imageprep.Enlarge(g, 8)) }); err != nil {
					return err
				}
			}
		}
		results = append(results, res)
	}
	if len(ok) > 0 {
		probs, err := m.Predict(inputs, len(ok))
		if err != nil {
			return err
		}
		k := len(info.Classes)
		for j, i := range ok {
			row := probs[j*k : (j+1)*k]
			r := &results[i]
			for _, c := range eval.TopK(row, max(*top, 1)) {
				r.Top = append(r.Top, topK{Label: info.Classes[c], ClassID: c, Probability: row[c]})
			}
			r.Label, r.ClassID, r.Confidence = r.Top[0].Label, r.Top[0].ClassID, r.Top[0].Probability
		}
	}
	failed := 0
	for _, r := range results {
		if r.Error != "" {
			failed++
		}
		if *asJSON {
			if err := json.NewEncoder(stdout).Encode(r); err != nil {
				return err
			}
			continue
		}
		if r.Error != "" {
			fmt.Fprintf(stdout, "%s\terror: %s\n", r.File, r.Error)
			continue
		}
		parts := make([]string, len(r.Top))
		for i, t := range r.Top {
			parts[i] = fmt.Sprintf("%s %.1f%%", t.Label, 100*t.Probability)
		}
		fmt.Fprintf(stdout, "%s\t%s\n", r.File, strings.Join(parts, ", "))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d files could not be classified", failed, len(results))
	}
	return nil
}

// prepareFile reads an image file and converts it to the model's input.
func prepareFile(name string, maxPixels int) (*image.Gray, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return imageprep.Prepare(data, imageprep.Limits{MaxPixels: maxPixels})
}
