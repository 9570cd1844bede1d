package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/fashion-classifier/fashion/internal/imageprep"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/repository"
)

// servedModel is one loaded model version as the server runs it: its
// predictor, its description under its serving name and its own
// micro-batcher. The repository closes it when its last request ends.
type servedModel struct {
	name, version string
	pred          Predictor
	info          modelfile.Info
	batch         *batcher
	// ood is the model's out-of-distribution detector when it has one:
	// the batcher's rows then carry its score after the probabilities.
	ood     oodPredictor
	onClose func()
}

// Close stops the version's batcher; the repository calls it once the
// version is withdrawn and no request holds it any more.
func (m *servedModel) Close() {
	m.batch.close()
	if m.onClose != nil {
		m.onClose()
	}
}

// modelRef is a request's reference to the version it runs on.
type modelRef = repository.Ref[*servedModel]

// newServedModel checks p's description, starts its batcher and, when
// Config.WarmUp is set, warms it up.
func (s *Server) newServedModel(ctx context.Context, name string, version int64, p Predictor) (*servedModel, error) {
	info := p.Info()
	if len(info.Classes) == 0 {
		return nil, fmt.Errorf("server: model %q has no class labels", name)
	}
	if !(info.Std > 0) {
		return nil, fmt.Errorf("server: model %q has normalisation std %v, want positive", name, info.Std)
	}
	info.Name = name
	m := &servedModel{name: name, version: strconv.FormatInt(version, 10), pred: p, info: info}
	if s.cfg.WarmUp {
		if err := warmUp(ctx, p, len(info.Classes), s.cfg.MaxBatch); err != nil {
			return nil, fmt.Errorf("server: warming up model %q version %d: %w", name, version, err)
		}
	}
	width := len(info.Classes)
	var bp Predictor = p
	if o, ok := p.(oodPredictor); ok && o.HasOOD() {
		m.ood, bp, width = o, oodColumn{o}, width+1
	}
	m.batch = newBatcher(bp, width, s.cfg, s.metrics, s.log)
	m.onClose = func() { s.metrics.forgetModel(m.name, m.version) }
	return m, nil
}

// warmUpSizes are the batch sizes a warm-up runs: every power of two up to
// maxBatch, and maxBatch itself. The batcher forms batches of any size up to
// maxBatch; these sizes grow every buffer pool and free list to the size the
// batcher will need and fault in the weights, so the first real requests do
// not pay for it.
func warmUpSizes(maxBatch int) []int {
	var out []int
	for n := 1; n < maxBatch; n *= 2 {
		out = append(out, n)
	}
	return append(out, maxBatch)
}

// warmUp runs one forward pass at each of warmUpSizes on blank images and
// checks the answers' shape.
func warmUp(ctx context.Context, p Predictor, classes, maxBatch int) error {
	sizes := warmUpSizes(maxBatch)
	x := make([]float32, sizes[len(sizes)-1]*modelfile.Pixels)
	for _, n := range sizes {
		if err := ctx.Err(); err != nil {
			return err
		}
		out, err := p.Predict(x[:n*modelfile.Pixels], n)
		if err != nil {
			return fmt.Errorf("batch of %d: %w", n, err)
		}
		if len(out) != n*classes {
			return fmt.Errorf("batch of %d: %d outputs, want %d", n, len(out), n*classes)
		}
	}
	return nil
}

// loadVersion is the repository's LoadFunc: open the file, start its
// batcher, warm it up.
func (s *Server) loadVersion(ctx context.Context, spec repository.Spec) (*servedModel, error) {
	p, err := s.cfg.OpenModel(ctx, spec)
	if err != nil {
		return nil, err
	}
	return s.newServedModel(ctx, spec.Name, spec.Version, p)
}

// modelKey is the context key of a request's inference record.
type modelKey struct{}

// modelOf returns the model version the request runs on; withModel put it
// there.
func modelOf(ctx context.Context) *servedModel {
	return recordOf(ctx).ref.Model()
}

// recordOf returns the request's inference record.
func recordOf(ctx context.Context) *inference {
	return ctx.Value(modelKey{}).(*inference)
}

// acquireError maps a repository error to the status a client gets: 404
// for a model or version that does not exist, 400 for one that exists but
// is not loaded (as Triton answers).
func acquireError(err error) error {
	switch {
	case errors.Is(err, repository.ErrNotFound):
		return withStatus(http.StatusNotFound, err)
	case errors.Is(err, repository.ErrUnavailable):
		return withStatus(http.StatusBadRequest, err)
	}
	return err
}

// withModel resolves the model a request names — the {name} and {version}
// path segments, else the model and version query parameters, else the
// default model — takes a reference to that version for the whole request
// and records the inference when the handler returns. A request that
// names no model, on a server with a photo model (New was given a
// predictor.Routed), also takes a reference to the photo model's highest
// ready version, so each of its images can be answered by the model meant
// for it (routeOf); when that model is unavailable (unloaded) the default
// model answers everything.
func (s *Server) withModel(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, ver := r.PathValue("name"), r.PathValue("version")
		if name == "" {
			q := r.URL.Query()
			name, ver = q.Get("model"), q.Get("version")
		}
		routed := false
		if name == "" {
			name, routed = s.cfg.ModelName, ver == "" && s.photoName != ""
		}
		ref, err := s.repo.Acquire(name, ver)
		if err != nil {
			s.fail(w, r, acquireError(err))
			return
		}
		defer ref.Release()
		rec := s.newInference(r.Context(), ref, "rest")
		if routed {
			if photo, err := s.repo.Acquire(s.photoName, ""); err == nil {
				defer photo.Release()
				rec.photo = photo
			}
		}
		next(w, r.WithContext(context.WithValue(r.Context(), modelKey{}, rec)))
		s.finish(rec)
	}
}

// routeOf returns the model version that answers an image of the
// request: the photo model when the request is routed (withModel) and the
// image is not dataset-like, else the request's model.
func routeOf(rec *inference, in imageprep.Input) *servedModel {
	if rec.photo != nil && !in.DatasetLike {
		return rec.photo.Model()
	}
	return rec.ref.Model()
}

// maxClasses is the most classes of the models that may answer the
// request's images: the largest top_k it accepts (each ranking has at most
// its model's classes).
func maxClasses(ctx context.Context) int {
	rec := recordOf(ctx)
	k := len(rec.ref.Model().info.Classes)
	if rec.photo != nil {
		k = max(k, len(rec.photo.Model().info.Classes))
	}
	return k
}

// queueTotals sums the queued and announced images over every loaded
// version, for the queue gauges.
func (s *Server) queueTotals() (queued, pending int64) {
	s.repo.Each(func(m *servedModel) {
		queued += m.batch.queuedImages()
		pending += m.batch.pending.Load()
	})
	return queued, pending
}

// oodPredictor is a model with an out-of-distribution detector
// (modelfile.Classifier with a calibrated file).
type oodPredictor interface {
	Predictor
	HasOOD() bool
	Scores(x []float32, n int) ([]float32, []float64, error)
	InDistribution(score float64) (in, ok bool)
}

// oodColumn is what the batcher runs for a model with a detector: each
// row is the probabilities followed by the image's out-of-distribution
// score, so one forward pass answers both (infer splits them again).
type oodColumn struct{ p oodPredictor }

func (o oodColumn) Info() modelfile.Info { return o.p.Info() }

func (o oodColumn) Predict(x []float32, n int) ([]float32, error) {
	probs, scores, err := o.p.Scores(x, n)
	if err != nil {
		return nil, err
	}
	k := len(probs) / max(n, 1)
	out := make([]float32, 0, n*(k+1))
	for i := range n {
		out = append(out, probs[i*k:(i+1)*k]...)
		out = append(out, float32(scores[i]))
	}
	return out, nil
}
