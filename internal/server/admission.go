package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// Admission happens in stages, each with its own bound, so that a request
// waiting on something slow never holds what the others need:
//
//  1. the body: read in full, under the byte budget and a read deadline,
//     before anything else is taken (readBodyStage);
//  2. URL fetches: bounded in number (Config.MaxFetches), their bytes
//     charged to the same byte budget, no inference slot held;
//  3. the inference slot (Config.MaxInFlight), taken only when the bytes
//     are at hand, for decoding and the forward pass;
//  4. decoding itself, at most Config.MaxDecodes images at once.
//
// Stages 1–3 refuse at once with 503 and Retry-After when full, so
// overload never turns into waiting goroutines.

// Errors of the admission stages; all are answered with 503 + Retry-After.
var (
	// errOverloaded: MaxInFlight inference requests were already served.
	errOverloaded = errors.New("server is at capacity (too many requests in flight), retry later")
	// errBodyBudget: the bytes of bodies in flight reached Config.BodyBudget.
	errBodyBudget = errors.New("server is at capacity (its memory budget for request bodies and fetched images is in use), retry later")
	// errTooManyFetches: Config.MaxFetches URL fetches were in progress.
	errTooManyFetches = errors.New("server is at capacity (too many image fetches in progress), retry later")
)

// slots is a non-blocking counting semaphore: a request either gets a slot
// at once or is refused, so overload never turns into waiting goroutines,
// buffered bodies or decoded images. Production model servers (TorchServe,
// Triton, TF Serving) shed load the same way, before doing any work for
// the request.
type slots struct {
	max      int64
	inFlight atomic.Int64
}

// tryAcquire takes a slot if one is free and reports whether it did.
func (a *slots) tryAcquire() bool {
	if a.inFlight.Add(1) > a.max {
		a.inFlight.Add(-1)
		return false
	}
	return true
}

// release returns a slot taken by tryAcquire.
func (a *slots) release() { a.inFlight.Add(-1) }

// byteBudget bounds the bytes of request bodies, multipart parts, decoded
// base64 and fetched images held by all requests together: one weighted
// semaphore, charged as the bytes arrive rather than as declared, so a
// client that announces 10 MiB and trickles holds only what it sent.
type byteBudget struct {
	sem  *semaphore.Weighted
	size int64
	held atomic.Int64 // for the metrics gauge
}

func newByteBudget(size int64) *byteBudget {
	return &byteBudget{sem: semaphore.NewWeighted(size), size: size}
}

// leaseOverhead is charged once per lease for what a request costs beside
// its bytes (goroutine, buffers, bookkeeping), so the budget also bounds how
// many requests can be reading at once however small their bodies.
const leaseOverhead = 16 << 10

// readChunk is the smallest step by which a lease's read buffer grows.
const readChunk = 32 << 10

// lease is one request's share of the byte budget. It is not safe for
// concurrent use except through take and give, which are.
type lease struct {
	b *byteBudget
	n atomic.Int64
}

// newLease charges leaseOverhead, or fails with errBodyBudget.
func (b *byteBudget) newLease() (*lease, error) {
	l := &lease{b: b}
	if err := l.take(leaseOverhead); err != nil {
		return nil, err
	}
	return l, nil
}

// take charges n more bytes, or fails with errBodyBudget without waiting.
func (l *lease) take(n int64) error {
	if n <= 0 {
		return nil
	}
	if !l.b.sem.TryAcquire(n) {
		return errBodyBudget
	}
	l.n.Add(n)
	l.b.held.Add(n)
	return nil
}

// give returns n bytes charged earlier.
func (l *lease) give(n int64) {
	if n <= 0 {
		return
	}
	l.n.Add(-n)
	l.b.held.Add(-n)
	l.b.sem.Release(n)
}

// release returns everything the lease holds; the bytes it handed out must
// no longer be used. It is safe to call more than once.
func (l *lease) release() { l.give(l.n.Load()) }

// read reads r to its end into a buffer charged to the lease, growing it
// in steps as bytes arrive: never more than limit+1 bytes (the caller tells
// "too large" by the length) and, when hint > 0 (a declared length), never
// a capacity beyond hint+1. While the buffer grows, old and new are both
// charged. It fails with errBodyBudget when the budget is exhausted.
// Its signature fits fetch.ReadFunc.
func (l *lease) read(r io.Reader, limit int64) ([]byte, error) { return l.readHint(r, 0, limit) }

func (l *lease) readHint(r io.Reader, hint, limit int64) ([]byte, error) {
	ceil := limit + 1
	if hint > 0 && hint < limit {
		ceil = hint + 1
	}
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) >= limit+1 {
				return buf, nil
			}
			if int64(cap(buf)) >= ceil { // the declared length was a lie: go on to the limit
				ceil = limit + 1
			}
			next := min(max(int64(cap(buf))*2, readChunk), ceil)
			if ceil-next < readChunk {
				next = ceil // no tiny last step that copies everything for one byte
			}
			if err := l.take(next); err != nil {
				return nil, err
			}
			nb := make([]byte, len(buf), next)
			copy(nb, buf)
			l.give(int64(cap(buf)))
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// readBodyStage is admission stage 1 for a request that carries a body: it
// refuses a declared length over MaxBody at once, then reads the whole body
// under the byte budget with a read deadline of Config.BodyTimeout, so a
// client trickling its body is cut off without ever holding an inference
// slot. The caller must release the lease.
func (s *Server) readBodyStage(w http.ResponseWriter, r *http.Request) ([]byte, *lease, error) {
	tooLarge := withStatus(http.StatusRequestEntityTooLarge,
		fmt.Errorf("request body is larger than the %d-byte limit", s.cfg.MaxBody))
	if r.ContentLength > s.cfg.MaxBody {
		return nil, nil, tooLarge
	}
	l, err := s.budget.newLease()
	if err != nil {
		s.metrics.admissionRejected.WithLabelValues("body_budget").Inc()
		return nil, nil, err
	}
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(s.cfg.BodyTimeout)
	if d, ok := r.Context().Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// An error here means the connection cannot take deadlines (HTTP/2
	// streams can, recorders in tests cannot); the server's ReadTimeout
	// still bounds the read.
	_ = rc.SetReadDeadline(deadline)
	data, err := l.readHint(r.Body, r.ContentLength, s.cfg.MaxBody)
	if err == nil && int64(len(data)) > s.cfg.MaxBody {
		err = tooLarge
	}
	if err != nil {
		l.release()
		if errors.Is(err, errBodyBudget) {
			s.metrics.admissionRejected.WithLabelValues("body_budget").Inc()
			return nil, nil, err
		}
		return nil, nil, bodyError(err, s.cfg.BodyTimeout)
	}
	_ = rc.SetReadDeadline(time.Time{})
	return data, l, nil
}

// bodyError attaches a status to a failed body read: 408 when the client
// was too slow, 499 when it hung up, 400 otherwise.
func bodyError(err error, timeout time.Duration) error {
	var he *httpError
	if errors.As(err, &he) {
		return err
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return withStatus(http.StatusRequestTimeout,
			fmt.Errorf("request body not received within %v: send it faster or in a smaller request", timeout))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, context.Canceled):
		return withStatus(StatusClientClosedRequest, fmt.Errorf("client closed the connection before sending the whole body: %w", err))
	}
	return withStatus(http.StatusBadRequest, fmt.Errorf("reading request body: %w", err))
}

// inferenceHandler is an endpoint behind admission: it gets the request's
// body (nil for GET) and its lease, to which it charges whatever further
// bytes it holds (multipart parts, base64, fetched images).
type inferenceHandler func(w http.ResponseWriter, r *http.Request, body []byte, l *lease)

// admit wraps an inference endpoint with admission stage 1: the body is
// read under the byte budget and BodyTimeout before the handler runs. The
// handler takes its inference slot (acquireSlot) once it has the bytes.
func (s *Server) admit(next inferenceHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var (
			body []byte
			l    *lease
			err  error
		)
		if r.Method == http.MethodPost {
			body, l, err = s.readBodyStage(w, r)
		} else if l, err = s.budget.newLease(); err != nil {
			s.metrics.admissionRejected.WithLabelValues("body_budget").Inc()
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		defer l.release()
		next(w, r, body, l)
	}
}

// acquireSlot is admission stage 3: it takes an inference slot, or answers
// 503 with Retry-After and returns false. Call release when it returns true.
func (s *Server) acquireSlot(w http.ResponseWriter, r *http.Request) bool {
	if !s.inference.tryAcquire() {
		s.metrics.admissionRejected.WithLabelValues("in_flight").Inc()
		s.fail(w, r, errOverloaded)
		return false
	}
	return true
}
