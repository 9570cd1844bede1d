package server

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/fashion-classifier/fashion/internal/eval"
	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// This file is the request log, in the spirit of KServe's payload logger:
// one JSON line per sampled inference, with what was asked of which model
// version and what it answered, but never the image bytes unless
// Config.RequestLogInputs asks for them.

// RequestLogEntry is one line of the request log.
type RequestLogEntry struct {
	Time      time.Time `json:"time"`
	ID        string    `json:"id"`
	Protocol  string    `json:"protocol"` // "rest" or "grpc"
	Model     string    `json:"model"`
	Version   string    `json:"version"`
	Images    int       `json:"images"`
	LatencyMS float64   `json:"latency_ms"`
	QueueMS   float64   `json:"queue_ms"`
	// TopClass and Confidence hold, per image, the most likely label and
	// its probability.
	TopClass   []string  `json:"top_class"`
	Confidence []float32 `json:"confidence"`
	// InDistribution says, per image, whether it looks like the model's
	// training data; only for models with an out-of-distribution detector.
	InDistribution []bool `json:"in_distribution,omitempty"`
	// AnsweredBy names, per image, the model that answered it, for
	// requests routed between the default and the photo model (which name
	// no model); the images are then listed model by model, default first.
	AnsweredBy []string `json:"answered_by,omitempty"`
	// Inputs are the 28×28 model inputs as PNG data URLs, only with
	// Config.RequestLogInputs.
	Inputs []string `json:"inputs,omitempty"`
	Error  string   `json:"error,omitempty"`
}

// requestLog writes entries as JSON lines to one writer.
type requestLog struct {
	mu     sync.Mutex
	w      io.Writer
	closer io.Closer
	sample float64
	inputs bool
}

// openRequestLog opens the log named by cfg.RequestLog: "-" for stdout, else
// a file appended to. It returns nil when the log is off.
func openRequestLog(cfg Config, stdout io.Writer) (*requestLog, error) {
	if cfg.RequestLog == "" {
		return nil, nil
	}
	if !(cfg.RequestLogSample > 0 && cfg.RequestLogSample <= 1) {
		return nil, fmt.Errorf("server: request log sample %v: want a fraction in (0, 1]", cfg.RequestLogSample)
	}
	l := &requestLog{w: stdout, sample: cfg.RequestLogSample, inputs: cfg.RequestLogInputs}
	if cfg.RequestLog != "-" {
		f, err := os.OpenFile(cfg.RequestLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("server: opening request log: %w", err)
		}
		l.w, l.closer = f, f
	}
	return l, nil
}

// write appends e as one line; a failing log never fails the request.
func (l *requestLog) write(e *RequestLogEntry) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	b = append(b, '\n')
	l.mu.Lock()
	l.w.Write(b)
	l.mu.Unlock()
}

func (l *requestLog) close() {
	if l != nil && l.closer != nil {
		l.closer.Close()
	}
}

// inference is what one request did with its model version, filled in as
// it goes and reported by finish.
type inference struct {
	start    time.Time
	id       string
	protocol string
	ref      *modelRef
	// photo is the photo model version when the request is routed
	// (withModel): it answers the images that are not dataset-like.
	photo   *modelRef
	sampled bool

	ran       bool
	images    int
	queueWait time.Duration
	entry     *RequestLogEntry // only when sampled
}

// newInference starts the record of a request on ref's version, and decides
// whether the request log samples it.
func (s *Server) newInference(ctx context.Context, ref *modelRef, protocol string) *inference {
	rec := &inference{start: time.Now(), id: requestIDFrom(ctx), protocol: protocol, ref: ref}
	rec.sampled = s.reqlog != nil && (s.reqlog.sample >= 1 || rand.Float64() < s.reqlog.sample)
	return rec
}

// inferOOD runs n normalised images through model version m (the
// request's, or for a routed request possibly its photo model), recording
// queue time and, for the request log, the answer; it also returns each
// image's out-of-distribution score when the model has a detector (nil
// otherwise).
func (s *Server) inferOOD(ctx context.Context, m *servedModel, t *ticket, x []float32, n int) ([]float32, []float64, error) {
	rec := recordOf(ctx)
	probs, wait, err := m.batch.submitTimed(ctx, t, x, n)
	var scores []float64
	if err == nil && m.ood != nil {
		nc := len(m.info.Classes)
		rows := probs
		probs, scores = make([]float32, 0, n*nc), make([]float64, n)
		for i := range n {
			probs = append(probs, rows[i*(nc+1):i*(nc+1)+nc]...)
			scores[i] = float64(rows[i*(nc+1)+nc])
		}
	}
	rec.ran = true
	rec.images += n
	rec.queueWait += wait
	if !rec.sampled {
		return probs, scores, err
	}
	if rec.entry == nil {
		rec.entry = &RequestLogEntry{}
	}
	e := rec.entry
	if err != nil {
		e.Error = err.Error()
		return probs, scores, err
	}
	nc := len(m.info.Classes)
	for i := range n {
		row := probs[i*nc : (i+1)*nc]
		best := eval.Argmax(row)
		e.TopClass = append(e.TopClass, m.info.Classes[best])
		e.Confidence = append(e.Confidence, row[best])
		if scores != nil {
			if in, ok := m.ood.InDistribution(scores[i]); ok {
				e.InDistribution = append(e.InDistribution, in)
			}
		}
		if rec.photo != nil {
			e.AnsweredBy = append(e.AnsweredBy, m.name)
		}
		if s.reqlog.inputs {
			e.Inputs = append(e.Inputs, pngDataURL(denormalize(x[i*modelfile.Pixels:(i+1)*modelfile.Pixels], m.info)))
		}
	}
	return probs, scores, nil
}

// denormalize turns one normalised model input back into the 8-bit image
// it came from.
func denormalize(x []float32, info modelfile.Info) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, modelfile.Side, modelfile.Side))
	for i, v := range x {
		p := (v*info.Std + info.Mean) * 255
		g.Pix[i] = uint8(min(max(p+0.5, 0), 255))
	}
	return g
}

// finish records a request that ran inference: the per-model latency and
// queue-time histograms, and the request log line if sampled.
func (s *Server) finish(rec *inference) {
	if !rec.ran {
		return
	}
	d := time.Since(rec.start)
	name, ver := rec.ref.Name(), rec.ref.Version()
	s.metrics.observeModel(name, ver, rec.protocol, d, rec.queueWait)
	if !rec.sampled || rec.entry == nil {
		return
	}
	e := rec.entry
	e.Time, e.ID, e.Protocol, e.Model, e.Version = rec.start.UTC(), rec.id, rec.protocol, name, ver
	e.Images = rec.images
	e.LatencyMS = float64(d.Microseconds()) / 1000
	e.QueueMS = float64(rec.queueWait.Microseconds()) / 1000
	s.reqlog.write(e)
}
