// Package predictor opens a model file of any supported format — our own
// safetensors files and ONNX graphs — as one Predictor. It is the one place
// models are opened: every fashion command (version, eval, predict, serve,
// export) gets its model here, and so does the server.
//
// A file is refused before it is read when it is not a regular file (a
// device such as /dev/zero, a FIFO, a directory) or is over a size cap, and
// its metadata — class names, normalisation — is checked before any network
// of the size the file claims is built. Opening honours its context, so
// SIGTERM during a slow load ends it.
package predictor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"

	"github.com/fashion-classifier/fashion/internal/infer"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/onnx"
	"github.com/fashion-classifier/fashion/internal/safefile"
)

// Predictor is a loaded model: its description and a batched forward pass.
// *modelfile.Classifier and *onnx.Model are Predictors; both are safe for
// concurrent use.
type Predictor interface {
	// Info describes the model, including its labels and normalisation.
	Info() modelfile.Info
	// Predict returns n×len(Info().Classes) probabilities, row-major, for n
	// normalised images x laid out as [n,1,28,28].
	Predict(x []float32, n int) ([]float32, error)
}

// DefaultMaxBytes is the largest model file Open reads when Options.MaxBytes
// is zero: 256 MiB, fifty times our largest architecture.
const DefaultMaxBytes = 256 << 20

// maxSidecarBytes bounds an ONNX model's sidecar JSON.
const maxSidecarBytes = 1 << 20

// Options are what a caller may say about the model beyond its file.
type Options struct {
	// Name is the serving name; default modelfile.DefaultName or, for
	// ONNX, the sidecar's.
	Name string
	// Classes, Mean and Std override what an ONNX model's sidecar and
	// metadata say; zero values leave them alone. Our own model files
	// record theirs, so setting these for one is an error.
	Classes   []string
	Mean, Std float32
	// MaxBytes caps the size of the model file; 0 means DefaultMaxBytes.
	MaxBytes int64
	// PhotoPath, when set, is a model file that answers photos (named
	// modelfile.PhotoName; Name, Classes, Mean and Std do not apply to it)
	// while the model at Open's path, or the embedded benchmark model,
	// answers dataset-like images: Open then returns a *Routed.
	PhotoPath string
}

// Open loads the model at path, or the models embedded in the binary when
// path is empty: the benchmark and the photo model as a *Routed, each
// answering its own kind of input. A model file at path answers every
// input, unless Options.PhotoPath names a photo model to route photos to.
// The format is read from the file's first bytes: a safetensors header,
// else ONNX (protobuf, which has no signature). An ONNX model's sidecar,
// path+".json", is read when it exists. Cancelling ctx abandons the load
// between its steps and while a read blocks.
func Open(ctx context.Context, path string, opts Options) (Predictor, error) {
	main, err := openOne(ctx, path, opts)
	if err != nil {
		return nil, err
	}
	var photo Predictor
	switch {
	case opts.PhotoPath != "":
		p, err := openOne(ctx, opts.PhotoPath, Options{Name: modelfile.PhotoName, MaxBytes: opts.MaxBytes})
		if err != nil {
			return nil, fmt.Errorf("photo model: %w", err)
		}
		photo = p
	case path == "":
		p, err := modelfile.EmbeddedPhoto()
		if err != nil {
			return nil, err
		}
		photo = p
	default:
		return main, nil
	}
	r, err := NewRouted(main, photo)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// openOne loads the one model at path, or the embedded benchmark model
// when path is empty.
func openOne(ctx context.Context, path string, opts Options) (Predictor, error) {
	overrides := opts.Mean != 0 || opts.Std != 0 || opts.Classes != nil
	if path == "" {
		if overrides {
			return nil, errors.New("mean, std and classes apply to ONNX models; the embedded model records its own")
		}
		c, err := modelfile.Embedded()
		if err != nil {
			return nil, err
		}
		if opts.Name != "" {
			if c, err = modelfile.New(c.Decoded(), opts.Name, c.Info().Source); err != nil {
				return nil, err
			}
		}
		return c, nil
	}
	maxBytes := opts.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	data, err := safefile.ReadFile(ctx, path, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("reading model: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loading %s: %w", path, err)
	}
	if isSafetensors(data) {
		if overrides {
			return nil, fmt.Errorf("mean, std and classes apply to ONNX models; %s records its own", path)
		}
		d, err := modelfile.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("loading %s: %w", path, err)
		}
		if d.Meta.Arch == modelfile.ArchONNX {
			return openONNXInt8(d, opts.Name, path)
		}
		name := opts.Name
		if name == "" {
			name = modelfile.DefaultName
		}
		c, err := modelfile.New(d, name, path)
		if err != nil {
			return nil, err
		}
		return c, nil
	}

	o := onnx.Options{Name: opts.Name, Classes: opts.Classes, Mean: opts.Mean, Std: opts.Std, Source: path}
	side, err := safefile.ReadFile(ctx, path+".json", maxSidecarBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading sidecar: %w", err)
	default:
		if o.Sidecar, err = onnx.ParseSidecar(side); err != nil {
			return nil, fmt.Errorf("%s.json: %w", path, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loading %s: %w", path, err)
	}
	m, err := onnx.Decode(data, o)
	if err != nil {
		return nil, fmt.Errorf("%s: not a safetensors model file; as ONNX: %w", path, err)
	}
	return m, nil
}

// openONNXInt8 compiles a quantized ONNX model's file: its graph, with the
// classes, normalisation and temperature its metadata records, and its
// int8 layers swapped in.
func openONNXInt8(d *modelfile.Decoded, name, path string) (Predictor, error) {
	m := d.Meta
	side := &onnx.Sidecar{Classes: m.Classes, Mean: &m.Mean, Std: &m.Std, Temperature: m.Temperature}
	o := onnx.Options{Name: name, Sidecar: side, Source: path, Int8: &onnx.Int8{
		Dropped: m.Dropped,
		Apply:   func(p *infer.Program) (*infer.Program, error) { return modelfile.Int8Program(p, d) },
		SHA256:  d.SHA256,
	}}
	om, err := onnx.Decode(d.ONNX, o)
	if err != nil {
		return nil, fmt.Errorf("%s: quantized ONNX model: %w", path, err)
	}
	return om, nil
}

// isSafetensors reports whether data starts like a safetensors file: an
// 8-byte little-endian header length that fits the data, then a JSON
// object.
func isSafetensors(data []byte) bool {
	if len(data) < 10 {
		return false
	}
	n := binary.LittleEndian.Uint64(data)
	return n >= 2 && n <= uint64(len(data)-8) && bytes.HasPrefix(bytes.TrimLeft(data[8:8+min(n, 64)], " \t\r\n"), []byte("{"))
}
