package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/fetch"
	"github.com/fashion-classifier/fashion/internal/imageprep"
	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// Class is one entry of a result's ranking.
type Class struct {
	Label       string  `json:"label"`
	ClassID     int     `json:"class_id"`
	Probability float32 `json:"probability"`
}

// Result is the classification of one image, the object the report's
// /image-classify answered, extended with a ranking.
type Result struct {
	Label      string  `json:"label"`
	ClassID    int     `json:"class_id"`
	Confidence float32 `json:"confidence"`
	Top        []Class `json:"top"`
	// InDistribution says whether the image looks like the model's
	// training data (false: probably not clothing, or not one of these
	// classes), and OODScore is the score behind it (higher is less like
	// the training data; the threshold is recorded in the model file).
	// Both are absent for models without a detector.
	InDistribution *bool    `json:"in_distribution,omitempty"`
	OODScore       *float64 `json:"ood_score,omitempty"`
	// InputImage is the 28×28 image the model saw, as a PNG data URL; only
	// present when the request asked for it (include_input=1).
	InputImage string `json:"input_image,omitempty"`
	// Model names the model that answered: for requests that name no
	// model, with the embedded models, fashion-mnist for dataset-like
	// images (28×28, dark background) and fashion-photos for photos.
	Model string `json:"model"`
}

// BatchItem is one entry of a batch answer: a Result, or the error that
// stopped this one image (the other images are still classified).
type BatchItem struct {
	// File is the upload's file name (multipart filename), or the image's
	// url in a JSON batch, so each answer can be matched to its input
	// without counting; absent when the input had neither.
	File string `json:"file,omitempty"`
	*Result
	Error  string `json:"error,omitempty"`
	Status int    `json:"status,omitempty"`
}

// BatchResponse answers a batch request, one item per input in input order.
type BatchResponse struct {
	Results []BatchItem `json:"results"`
}

// ModelResponse answers GET /v1/model.
type ModelResponse struct {
	modelfile.Info
	Version   string `json:"version"`
	MaxBatch  int    `json:"max_batch"`
	MaxImages int    `json:"max_images"`
	MaxBody   int64  `json:"max_body_bytes"`
	// PhotoModel describes the model that answers photos (images that are
	// not dataset-like) of requests naming no model, when the server has
	// one; the model above answers the rest.
	PhotoModel *PhotoModel `json:"photo_model,omitempty"`
}

// PhotoModel is ModelResponse's description of the photo model.
type PhotoModel struct {
	modelfile.Info
	Version string `json:"version"`
}

// defaultTopK is the ranking length when a request does not say.
const defaultTopK = 3

// rawImageTypes are the Content-Types POST /v1/classify takes as a raw image
// body. The bytes decide the format; the type only says "this is an image".
var rawImageTypes = map[string]bool{
	"image/png": true, "image/jpeg": true, "image/jpg": true, "image/gif": true,
	"image/webp": true, "image/bmp": true, "image/x-ms-bmp": true,
	"application/octet-stream": true,
}

// options are the per-request settings of a classification.
type options struct {
	topK         int
	includeInput bool
}

// parseOptions reads top_k and include_input from the query string.
func (s *Server) parseOptions(r *http.Request) (options, error) {
	o := options{topK: defaultTopK}
	q := r.URL.Query()
	if v := q.Get("top_k"); v != "" {
		k, err := strconv.Atoi(v)
		classes := maxClasses(r.Context())
		if err != nil {
			return o, topKError(v, classes)
		}
		if o.topK, err = s.checkTopK(k, classes); err != nil {
			return o, err
		}
	}
	var err error
	o.includeInput, err = queryBool(q, "include_input")
	return o, err
}

// queryBool reads a boolean query parameter: absent, 0 or false, 1 or true.
func queryBool(q url.Values, name string) (bool, error) {
	switch v := q.Get(name); v {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	default:
		return false, withStatus(http.StatusBadRequest, fmt.Errorf("%s=%q: want 1 or 0", name, v))
	}
}

// checkTopK checks a top_k value: an integer from 1 to the number of
// classes (of the model with the most, when a request may be answered by
// two: each ranking is then cut at its model's classes).
func (s *Server) checkTopK(k, classes int) (int, error) {
	if k < 1 || k > classes {
		return 0, topKError(strconv.Itoa(k), classes)
	}
	return k, nil
}

func topKError(v string, classes int) error {
	return withStatus(http.StatusBadRequest, fmt.Errorf("top_k=%q: want an integer from 1 to %d", v, classes))
}

// decode runs f, which decodes data, as admission stage 4: at most
// Config.MaxDecodes at once (waiting within the request's deadline), with
// empty input refused and a panic inside a decoder turned into a 400 (a bad
// image, not a server fault).
func (s *Server) decode(ctx context.Context, data []byte, f func() error) (err error) {
	if len(data) == 0 {
		return withStatus(http.StatusBadRequest, errors.New("empty image: the request carried no image bytes"))
	}
	if err := s.decodes.Acquire(ctx, 1); err != nil {
		return err
	}
	defer s.decodes.Release(1)
	defer func() {
		if v := recover(); v != nil {
			s.log.Warn("image decoder panicked", "panic", v, "bytes", len(data))
			err = withStatus(http.StatusBadRequest, fmt.Errorf("image could not be decoded (decoder failed: %v)", v))
		}
	}()
	if err := f(); err != nil {
		return imageError(err)
	}
	return nil
}

// prepare decodes image bytes into the 28×28 grayscale image the model sees,
// mapping imageprep's errors to HTTP statuses.
func (s *Server) prepare(ctx context.Context, data []byte) (imageprep.Input, error) {
	var g imageprep.Input
	err := s.decode(ctx, data, func() (err error) {
		g, err = imageprep.Prepare(data, imageprep.Limits{MaxPixels: s.cfg.MaxPixels})
		return err
	})
	if err != nil {
		return imageprep.Input{}, err
	}
	if b := g.Bounds(); b.Dx() != modelfile.Side || b.Dy() != modelfile.Side {
		return imageprep.Input{}, fmt.Errorf("image preparation gave %dx%d pixels, want %dx%d", b.Dx(), b.Dy(), modelfile.Side, modelfile.Side)
	}
	return g, nil
}

// decodeImage decodes image bytes for display, with the same checks and
// status mapping as prepare.
func (s *Server) decodeImage(ctx context.Context, data []byte) (image.Image, error) {
	var img image.Image
	err := s.decode(ctx, data, func() (err error) {
		img, _, err = imageprep.Decode(data, imageprep.Limits{MaxPixels: s.cfg.MaxPixels})
		return err
	})
	return img, err
}

// imageError attaches the HTTP status that fits an imageprep error.
func imageError(err error) error {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return err
	case errors.Is(err, imageprep.ErrUnsupported):
		return withStatus(http.StatusUnsupportedMediaType, err)
	case errors.Is(err, imageprep.ErrTooLarge):
		return withStatus(http.StatusRequestEntityTooLarge, err)
	default:
		return withStatus(http.StatusBadRequest, err)
	}
}

// grayPixels returns the Side×Side pixels of g in row order.
func grayPixels(g *image.Gray) []uint8 {
	b := g.Bounds()
	if g.Stride == modelfile.Side && b.Dx() == modelfile.Side && b.Dy() == modelfile.Side {
		off := g.PixOffset(b.Min.X, b.Min.Y)
		return g.Pix[off : off+modelfile.Pixels]
	}
	pix := make([]uint8, 0, modelfile.Pixels)
	for y := b.Min.Y; y < b.Min.Y+modelfile.Side; y++ {
		off := g.PixOffset(b.Min.X, y)
		pix = append(pix, g.Pix[off:off+modelfile.Side]...)
	}
	return pix
}

// classify runs the model on prepared images and builds one Result each.
// Each image is answered by the model routeOf picks for it: the
// request's model, or for a routed request the photo model for the
// images that are not dataset-like; one submission per model.
func (s *Server) classify(ctx context.Context, t *ticket, imgs []imageprep.Input, o options) ([]Result, error) {
	rec := recordOf(ctx)
	res := make([]Result, len(imgs))
	models := []*servedModel{rec.ref.Model()}
	if rec.photo != nil {
		models = append(models, rec.photo.Model())
	}
	for _, m := range models {
		var ids []int
		for i, g := range imgs {
			if routeOf(rec, g) == m {
				ids = append(ids, i)
			}
		}
		if len(ids) == 0 {
			continue
		}
		x := make([]float32, len(ids)*modelfile.Pixels)
		for j, i := range ids {
			m.info.Normalize(x[j*modelfile.Pixels:(j+1)*modelfile.Pixels], grayPixels(imgs[i].Gray))
		}
		probs, scores, err := s.inferOOD(ctx, m, t, x, len(ids))
		if err != nil {
			return nil, err
		}
		nc := len(m.info.Classes)
		for j, i := range ids {
			res[i] = result(m.info.Classes, probs[j*nc:(j+1)*nc], min(o.topK, nc))
			res[i].Model = m.name
			if scores != nil {
				if in, ok := m.ood.InDistribution(scores[j]); ok {
					score := scores[j]
					res[i].InDistribution, res[i].OODScore = &in, &score
				}
			}
			if o.includeInput {
				res[i].InputImage = pngDataURL(imgs[i].Gray)
			}
		}
	}
	s.metrics.images.Add(float64(len(imgs)))
	return res, nil
}

// result turns one row of probabilities into a Result with a top-k ranking.
func result(classes []string, p []float32, topK int) Result {
	ids := eval.TopK(p, topK)
	top := make([]Class, len(ids))
	for i, id := range ids {
		top[i] = Class{Label: classes[id], ClassID: id, Probability: p[id]}
	}
	best := eval.Argmax(p)
	return Result{Label: classes[best], ClassID: best, Confidence: p[best], Top: top}
}

// pngEncoder encodes small images fast; the model input is 784 bytes, so
// compression effort buys nothing.
var pngEncoder = png.Encoder{CompressionLevel: png.BestSpeed}

// pngDataURL encodes g as a PNG data URL.
func pngDataURL(g image.Image) string {
	var buf bytes.Buffer
	buf.WriteString("data:image/png;base64,")
	enc := base64.NewEncoder(base64.StdEncoding, &buf)
	if err := pngEncoder.Encode(enc, g); err != nil {
		return "" // cannot happen for an in-memory image
	}
	enc.Close()
	return buf.String()
}

// bufPool recycles request body buffers; bodies larger than maxPooledBuf are
// left to the garbage collector so one huge upload does not pin memory.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledBuf = 1 << 20

func getBuf() *bytes.Buffer { b := bufPool.Get().(*bytes.Buffer); b.Reset(); return b }

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuf {
		bufPool.Put(b)
	}
}

// fetchImage downloads url under the fetch policy as admission stage 2: at
// most Config.MaxFetches at once, the body charged to l as it arrives, and
// no inference slot held. Failures are counted by reason; refusals keep the
// status the fetch package chose (400/403/…).
func (s *Server) fetchImage(ctx context.Context, l *lease, url string) ([]byte, error) {
	if url == "" {
		return nil, withStatus(http.StatusBadRequest, errors.New("missing url: pass the image address as url=…"))
	}
	if b, ok := ownSample(ctx, url); ok {
		return b, nil
	}
	if !s.fetches.tryAcquire() {
		s.metrics.admissionRejected.WithLabelValues("fetches").Inc()
		return nil, errTooManyFetches
	}
	defer s.fetches.release()
	res, err := s.fetch.GetWith(ctx, url, l.read)
	if errors.Is(err, errBodyBudget) {
		s.metrics.admissionRejected.WithLabelValues("body_budget").Inc()
		return nil, err
	}
	if err != nil {
		var fe *fetch.Error
		if errors.As(err, &fe) {
			s.metrics.fetchFailures.WithLabelValues(fe.Reason).Inc()
			code := fe.Status
			if code == 0 {
				code = http.StatusBadGateway
			}
			return nil, withStatus(code, err)
		}
		s.metrics.fetchFailures.WithLabelValues("other").Inc()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, withStatus(http.StatusBadGateway, fmt.Errorf("fetching %q: %w", url, err))
	}
	return res.Body, nil
}

// handleImageClassify is the report's GET /image-classify?url=U&top_k=K.
func (s *Server) handleImageClassify(w http.ResponseWriter, r *http.Request, _ []byte, l *lease) {
	o, err := s.parseOptions(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data, err := s.fetchImage(r.Context(), l, r.URL.Query().Get("url"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.classifyOne(w, r, data, "", o)
}

// classifyOne takes an inference slot, prepares one encoded image,
// classifies it and answers the result object: the tail shared by every
// single-image endpoint. name, if not empty, labels errors ("file %q").
func (s *Server) classifyOne(w http.ResponseWriter, r *http.Request, data []byte, name string, o options) {
	if !s.acquireSlot(w, r) {
		return
	}
	defer s.inference.release()
	t := modelOf(r.Context()).batch.announce(1)
	defer t.release()
	g, err := s.prepare(r.Context(), data)
	if err != nil {
		if name != "" {
			err = fmt.Errorf("file %q: %w", name, err)
		}
		s.fail(w, r, err)
		return
	}
	res, err := s.classify(r.Context(), &t, []imageprep.Input{g}, o)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res[0])
}

// handleImageView is the report's GET /image-view?url=U: the fetched image
// re-encoded as PNG, or with preprocessed=1 the 28×28 model input scaled up.
func (s *Server) handleImageView(w http.ResponseWriter, r *http.Request, _ []byte, l *lease) {
	q := r.URL.Query()
	preprocessed, err := queryBool(q, "preprocessed")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	scale := 10
	if v := q.Get("scale"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 32 {
			s.fail(w, r, withStatus(http.StatusBadRequest, fmt.Errorf("scale=%q: want an integer from 1 to 32", v)))
			return
		}
		scale = n
	}
	data, err := s.fetchImage(r.Context(), l, q.Get("url"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !s.acquireSlot(w, r) {
		return
	}
	defer s.inference.release()
	var out image.Image
	if preprocessed {
		g, err := s.prepare(r.Context(), data)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out = imageprep.Enlarge(g.Gray, scale)
	} else {
		img, err := s.decodeImage(r.Context(), data)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out = img
	}
	buf := getBuf()
	defer putBuf(buf)
	if err := pngEncoder.Encode(buf, out); err != nil {
		s.fail(w, r, fmt.Errorf("encoding PNG: %w", err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/png")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
}

// handleV1Model describes the served model and the request limits.
func (s *Server) handleV1Model(w http.ResponseWriter, r *http.Request) {
	rec := recordOf(r.Context())
	m := rec.ref.Model()
	resp := ModelResponse{Info: m.info, Version: m.version, MaxBatch: s.cfg.MaxBatch,
		MaxImages: s.cfg.MaxImages, MaxBody: s.cfg.MaxBody}
	if rec.photo != nil {
		pm := rec.photo.Model()
		resp.PhotoModel = &PhotoModel{Info: pm.info, Version: pm.version}
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleClassify is POST /v1/classify: a raw image body, a multipart batch
// of "file" parts, or a JSON document naming images by URL or base64.
func (s *Server) handleClassify(w http.ResponseWriter, r *http.Request, body []byte, l *lease) {
	o, err := s.parseOptions(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" {
		mt, err = "application/octet-stream", nil
	}
	if err != nil {
		s.fail(w, r, withStatus(http.StatusUnsupportedMediaType, fmt.Errorf("Content-Type %q: %w", ct, err)))
		return
	}
	switch {
	case mt == "multipart/form-data":
		s.classifyMultipart(w, r, body, l, params["boundary"], o)
	case mt == "application/json":
		s.classifyJSON(w, r, body, l, o)
	case rawImageTypes[mt]:
		s.classifyOne(w, r, body, "", o)
	default:
		s.fail(w, r, withStatus(http.StatusUnsupportedMediaType, fmt.Errorf(
			"Content-Type %q is not accepted: send an image (image/png, image/jpeg, image/gif, image/webp, image/bmp), multipart/form-data with file parts, or application/json", mt)))
	}
}

// upload is one image of a batch: its bytes, or why they could not be read.
type upload struct {
	name string
	data []byte
	img  imageprep.Input
	err  error
}

// readMultipart reads the "file" parts of a multipart/form-data body in
// order, charging each part's bytes to l; other form fields are skipped.
// It fails if there are no file parts or more than maxImages.
func readMultipart(body []byte, l *lease, boundary string, maxImages int) ([]upload, error) {
	if boundary == "" {
		return nil, withStatus(http.StatusBadRequest, errors.New("multipart/form-data without a boundary parameter"))
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	var ups []upload
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, multipartError(err)
		}
		if p.FormName() != "file" {
			if _, err := io.Copy(io.Discard, p); err != nil {
				return nil, multipartError(err)
			}
			continue
		}
		if len(ups) == maxImages {
			return nil, withStatus(http.StatusRequestEntityTooLarge,
				fmt.Errorf("more than %d file parts; send at most %d images per request", maxImages, maxImages))
		}
		data, err := l.read(p, int64(len(body)))
		if err != nil {
			return nil, multipartError(err)
		}
		ups = append(ups, upload{name: p.FileName(), data: data})
	}
	if len(ups) == 0 {
		return nil, withStatus(http.StatusBadRequest, errors.New(`multipart body has no "file" part`))
	}
	return ups, nil
}

// multipartError attaches a status to an error met while reading a
// multipart body: budget refusals keep theirs, anything else is malformed
// input.
func multipartError(err error) error {
	if errors.Is(err, errBodyBudget) {
		return err
	}
	return withStatus(http.StatusBadRequest, fmt.Errorf("malformed multipart body: %w", err))
}

// classifyMultipart answers a multipart upload: one file gives one Result,
// several give a BatchResponse with a per-file error where a file is bad.
func (s *Server) classifyMultipart(w http.ResponseWriter, r *http.Request, body []byte, l *lease, boundary string, o options) {
	ups, err := readMultipart(body, l, boundary, s.cfg.MaxImages)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if len(ups) == 1 {
		s.classifyOne(w, r, ups[0].data, ups[0].name, o)
		return
	}
	s.answerBatch(w, r, ups, o)
}

// prepareUpload decodes u.data into u.img, or records in u.err why it
// could not, and drops the raw bytes either way.
func (s *Server) prepareUpload(ctx context.Context, u *upload) {
	if u.err != nil {
		return
	}
	g, err := s.prepare(ctx, u.data)
	u.data = nil
	if err != nil {
		if u.name != "" {
			err = fmt.Errorf("file %q: %w", u.name, err)
		}
		u.err = err
		return
	}
	u.img = g
}

// answerBatch takes an inference slot, prepares every upload (stopping as
// soon as the request's context ends, so a client that leaves stops costing
// CPU), classifies them in one submission and answers a BatchResponse in
// input order, with per-item errors for the rest.
func (s *Server) answerBatch(w http.ResponseWriter, r *http.Request, ups []upload, o options) {
	ctx := r.Context()
	if !s.acquireSlot(w, r) {
		return
	}
	defer s.inference.release()
	t := modelOf(r.Context()).batch.announce(len(ups))
	defer t.release()
	imgs := make([]imageprep.Input, 0, len(ups))
	for i := range ups {
		if err := ctx.Err(); err != nil {
			s.fail(w, r, err)
			return
		}
		s.prepareUpload(ctx, &ups[i])
		if ups[i].err == nil {
			imgs = append(imgs, ups[i].img)
		}
	}
	if err := ctx.Err(); err != nil {
		s.fail(w, r, err)
		return
	}
	var res []Result
	if len(imgs) > 0 {
		var err error
		res, err = s.classify(ctx, &t, imgs, o)
		if err != nil {
			s.fail(w, r, err)
			return
		}
	}
	out := BatchResponse{Results: make([]BatchItem, len(ups))}
	k := 0
	for i, u := range ups {
		if u.err != nil {
			out.Results[i] = BatchItem{File: u.name, Error: u.err.Error(), Status: statusOf(u.err)}
			continue
		}
		out.Results[i] = BatchItem{File: u.name, Result: &res[k]}
		k++
	}
	writeJSON(w, http.StatusOK, out)
}
