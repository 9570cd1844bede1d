package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/imagefolder"
	"github.com/fashion-classifier/fashion/internal/imageprep"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/ood"
	"github.com/fashion-classifier/fashion/internal/predictor"
	"github.com/fashion-classifier/fashion/internal/safefile"
	"github.com/fashion-classifier/fashion/internal/safetensors"
)

// calibrationSplit is how many of the official test images, from the
// first, calibrate temperature and threshold; reports on calibrated models
// use the rest (eval's -calibrated-from).
const calibrationSplit = 5000

func runCalibrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("calibrate", stderr)
	in := fs.String("model", "", "model file to calibrate (.safetensors)")
	out := fs.String("out", "", "where to write the calibrated model file")
	dataFlag := fs.String("data", "", "Fashion-MNIST directory (default: $FASHION_DATA, ./data/fashion-mnist, /usr/share/datasets/fashion-mnist)")
	fitN := fs.Int("fit", 20000, "training images the detector's class means and covariance are estimated on")
	photosTrain := fs.String("photos", "", "optional photo folders (a train split) whose one-class images join the detector's fit")
	photosHeld := fs.String("photos-heldout", "", "optional photo folders (a validation split, never test) that join the held-out calibration data")
	cacheDir := fs.String("photo-cache-dir", "", "directory for caches of converted photos")
	tpr := fs.Float64("tpr", 0.97, "share of held-out in-distribution images the threshold keeps in distribution")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: fashion calibrate -model in.safetensors -out out.safetensors [flags]\n\n"+
			"Fits, on held-out data only, the temperature that calibrates the model's probabilities and the\n"+
			"out-of-distribution detector (input-space Mahalanobis distance + energy, see internal/ood) with\n"+
			"its threshold, and records them in a copy of the model file. Held out: Fashion-MNIST test images\n"+
			"0–%d (reports then use images %d–9999) and -photos-heldout. No out-of-distribution data is used.\n\n", calibrationSplit-1, calibrationSplit)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" || *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("calibrate needs -model and -out")
	}
	raw, err := safefile.ReadFile(ctx, *in, predictor.DefaultMaxBytes)
	if err != nil {
		return fmt.Errorf("reading model: %w", err)
	}
	dec, err := modelfile.Decode(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	dec.Meta.Temperature, dec.Meta.OOD = 0, "" // measure the raw model
	m, err := modelfile.New(dec, modelfile.DefaultName, *in)
	if err != nil {
		return err
	}
	info := m.Info()
	k := len(info.Classes)
	dir, err := idx.FindDir(*dataFlag, os.Getenv)
	if err != nil {
		return err
	}
	data, err := idx.Load(dir)
	if err != nil {
		return err
	}
	const px = modelfile.Pixels
	n := min(*fitN, data.Train.Images.N)
	fitPix := append([]uint8(nil), data.Train.Images.Pix[:n*px]...)
	fitLabels := append([]uint8(nil), data.Train.Labels[:n]...)
	loadPhotos := func(path, name string) (*imagefolder.Set, error) {
		mp, err := imagefolder.ReadMappingFile(mappingBeside(path), info.Classes)
		if err != nil {
			return nil, err
		}
		cache := ""
		if *cacheDir != "" {
			cache = filepath.Join(*cacheDir, "cache-"+name+".gob")
		}
		return imagefolder.LoadCached(ctx, path, mp, imageprep.Limits{}, cache)
	}
	if *photosTrain != "" {
		s, err := loadPhotos(*photosTrain, "train")
		if err != nil {
			return err
		}
		for i := range s.Len() {
			if t := s.Targets(i); len(t) == 1 {
				fitPix = append(fitPix, s.Image(i)...)
				fitLabels = append(fitLabels, uint8(t[0]))
			}
		}
	}
	det, err := ood.Fit(fitPix, fitLabels, k)
	if err != nil {
		return err
	}

	// Held-out in-distribution data: the calibration half of the test set
	// and the held-out photos with classes.
	heldPix := append([]uint8(nil), data.Test.Images.Pix[:calibrationSplit*px]...)
	var right [][]int
	for _, l := range data.Test.Labels[:calibrationSplit] {
		right = append(right, []int{int(l)})
	}
	heldout := fmt.Sprintf("Fashion-MNIST test images 0-%d", calibrationSplit-1)
	if *photosHeld != "" {
		s, err := loadPhotos(*photosHeld, "validation")
		if err != nil {
			return err
		}
		for i := range s.Len() {
			if t := s.Targets(i); len(t) > 0 {
				heldPix = append(heldPix, s.Image(i)...)
				right = append(right, t)
			}
		}
		heldout += " and the photos with classes in " + *photosHeld
	}
	nh := len(right)
	x := make([]float32, nh*px)
	info.Normalize(x, heldPix)
	logits, err := m.Logits(x, nh)
	if err != nil {
		return err
	}
	scored := eval.Scored{Logits: logits, K: k, Right: right}
	temp, err := eval.FitTemperature(scored)
	if err != nil {
		return err
	}
	if err := det.Calibrate(heldPix, logits, *tpr, heldout); err != nil {
		return err
	}
	c1, r1 := scored.Confidences(1)
	_, ece1 := eval.Reliability(c1, r1, 15)
	ct, rt := scored.Confidences(temp)
	_, eceT := eval.Reliability(ct, rt, 15)

	f, err := safetensors.Decode(raw)
	if err != nil {
		return err
	}
	kept := f.Tensors[:0]
	for _, t := range f.Tensors {
		if len(t.Name) < len(modelfile.ExtraPrefix) || t.Name[:len(modelfile.ExtraPrefix)] != modelfile.ExtraPrefix {
			kept = append(kept, t)
		}
	}
	f.Tensors = kept
	for _, name := range []string{"ood/means", "ood/precision"} {
		v := det.Tensors()[name]
		shape := []int{len(v) / (ood.Side * ood.Side), ood.Side * ood.Side}
		f.Tensors = append(f.Tensors, safetensors.Tensor{Name: name, Shape: shape, Data: v})
	}
	f.Metadata["temperature"] = fmt.Sprintf("%.4f", temp)
	f.Metadata["ood"] = ood.MarshalNorm(det.Norm)
	f.Metadata["calibrated_on"] = heldout
	if err := safetensors.WriteFile(*out, f); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: temperature %.4f (held-out ECE %.4f → %.4f, NLL %.4f → %.4f on %d images), out-of-distribution threshold %.4f keeping %.0f%% of %s\n",
		*out, temp, ece1, eceT, scored.NLL(1), scored.NLL(temp), nh, det.Norm.Threshold, 100*det.Norm.TPR, heldout)
	return nil
}

// mappingBeside is the MAPPING.tsv in the parent of a photo split
// directory, as the clothing-photos set has it.
func mappingBeside(split string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(split)), "MAPPING.tsv")
}
