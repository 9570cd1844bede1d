package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/fashion-classifier/fashion/internal/atomicfile"
	"github.com/fashion-classifier/fashion/internal/chart"
	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/train"
)

func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", stderr)
	models := addModelFlags(fs).addTTAFlag(fs)
	dataFlag := fs.String("data", "", "Fashion-MNIST directory (default: $FASHION_DATA, ./data/fashion-mnist, /usr/share/datasets/fashion-mnist)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	confusion := fs.String("confusion", "", "also write the confusion matrix as a PNG to this file")
	limit := fs.Int("limit", 0, "evaluate only the first N test images (0: all 10,000)")
	var extra extraEval
	fs.StringVar(&extra.photos, "photos", "", "also report per-folder accuracy and out-of-distribution answers on this photo split (e.g. clothing-photos/test; MAPPING.tsv beside it)")
	fs.StringVar(&extra.mnist, "mnist", "", "also report the out-of-distribution detector on this MNIST test directory")
	fs.StringVar(&extra.reliability, "reliability", "", "write the reliability diagram (before and after temperature scaling) as a PNG to this file")
	fs.StringVar(&extra.cacheDir, "photo-cache-dir", "", "directory for caches of converted photos")
	fs.StringVar(&extra.grid, "grid", "", "with -photos: write a PNG grid of photos, what the model saw and what it said")
	fs.IntVar(&extra.gridEach, "grid-each", 2, "photos per folder in the -grid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	m, err := models.open(ctx)
	if err != nil {
		return err
	}
	dir, err := idx.FindDir(*dataFlag, os.Getenv)
	if err != nil {
		return err
	}
	test, err := idx.LoadTest(dir)
	if err != nil {
		return err
	}
	if *limit > 0 && *limit < test.Images.N {
		px := test.Images.Rows * test.Images.Cols
		test.Images.N, test.Images.Pix, test.Labels = *limit, test.Images.Pix[:*limit*px], test.Labels[:*limit]
	}
	info := m.Info()
	start := time.Now()
	conf, err := train.Evaluate(m.Predict, info, test, info.Classes)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	rep := conf.Report()
	if *confusion != "" {
		title := fmt.Sprintf("%s (%s): accuracy %.4f on %d test images", info.Name, info.Arch, rep.Accuracy, rep.N)
		if err := atomicfile.Write(*confusion, func(w io.Writer) error { return chart.ConfusionPNG(w, conf, title) }); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Model  any    `json:"model"`
			Source string `json:"data"`
			eval.Report
		}{info, dir, rep})
	}
	fmt.Fprintf(stdout, "model %s (%s, %s, sha256 %.12s…) on %s\n", info.Name, info.Arch, info.Source, info.SHA256, dir)
	fmt.Fprintf(stdout, "accuracy %.4f (%d of %d), %.0f images/s\n\n", rep.Accuracy, rep.Correct, rep.N, float64(rep.N)/elapsed.Seconds())
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	return extra.run(ctx, m, test, stdout)
}
