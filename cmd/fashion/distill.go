package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/predictor"
	"github.com/fashion-classifier/fashion/internal/train"
)

// teacherTargets computes train's soft targets for -teacher: the mean, over
// the model files at paths, of each model's probabilities for every image
// of set and for its mirror image. Each model's calibration temperature is
// undone (p_i ∝ p_T,i^T is the softmax of the raw logits), so the targets
// do not depend on a temperature fitted on test images.
func teacherTargets(ctx context.Context, paths []string, set idx.Set, classes []string, weight float32, log io.Writer) (*train.Teacher, error) {
	n, k := set.Images.N, len(classes)
	t := &train.Teacher{Plain: make([]float32, n*k), Mirrored: make([]float32, n*k), Weight: weight}
	mirrored := mirror(set.Images)
	var names []string
	for _, path := range paths {
		t0 := time.Now()
		p, err := predictor.Open(ctx, path, predictor.Options{})
		if err != nil {
			return nil, fmt.Errorf("-teacher: %w", err)
		}
		info := p.Info()
		if !slices.Equal(info.Classes, classes) {
			return nil, fmt.Errorf("-teacher %s has classes %q, the training data %q", path, info.Classes, classes)
		}
		for _, view := range []struct {
			pix []uint8
			dst []float32
		}{{set.Images.Pix, t.Plain}, {mirrored, t.Mirrored}} {
			if err := accumulate(ctx, p, info, view.pix, n, view.dst, 1/float32(len(paths))); err != nil {
				return nil, fmt.Errorf("-teacher %s: %w", path, err)
			}
		}
		names = append(names, filepath.Base(path))
		fmt.Fprintf(log, "teacher %s: %d images and their mirror images in %s\n", path, n, time.Since(t0).Round(time.Second))
	}
	t.Source = strings.Join(names, ",")
	return t, nil
}

// accumulate adds scale × p's temperature-1 probabilities for the n images
// pix to dst.
func accumulate(ctx context.Context, p predictor.Predictor, info modelfile.Info, pix []uint8, n int, dst []float32, scale float32) error {
	const batch = 256
	x := make([]float32, batch*modelfile.Pixels)
	for n0 := 0; n0 < n; n0 += batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := min(batch, n-n0)
		info.Normalize(x[:m*modelfile.Pixels], pix[n0*modelfile.Pixels:(n0+m)*modelfile.Pixels])
		probs, err := p.Predict(x[:m*modelfile.Pixels], m)
		if err != nil {
			return err
		}
		k := len(probs) / m
		for r := range m {
			row := probs[r*k : (r+1)*k]
			if temp := info.Temperature; temp > 0 && temp != 1 {
				var sum float64
				for i, v := range row {
					row[i] = float32(math.Pow(float64(v), temp))
					sum += float64(row[i])
				}
				for i := range row {
					row[i] = float32(float64(row[i]) / sum)
				}
			}
			out := dst[(n0+r)*k : (n0+r+1)*k]
			for i, v := range row {
				out[i] += scale * v
			}
		}
	}
	return nil
}

// mirror returns the pixels of every image flipped left to right.
func mirror(im idx.Images) []uint8 {
	out := make([]uint8, len(im.Pix))
	for r := 0; r < len(im.Pix)/im.Cols; r++ {
		src, dst := im.Pix[r*im.Cols:(r+1)*im.Cols], out[r*im.Cols:(r+1)*im.Cols]
		for i, v := range src {
			dst[im.Cols-1-i] = v
		}
	}
	return out
}
