package server

import (
	"errors"
	"net/http"
	"sync/atomic"
)

// errOverloaded is the answer to a request refused by admission control:
// MaxInFlight inference requests were already being served.
var errOverloaded = errors.New("server is at capacity (too many requests in flight), retry later")

// admission bounds the inference requests a server works on at once. It is
// a non-blocking counting semaphore: a request either gets a slot at once or
// is refused, so overload never turns into waiting goroutines, buffered
// bodies or decoded images. Production model servers (TorchServe, Triton,
// TF Serving) shed load the same way, before doing any work for the request.
type admission struct {
	max      int64
	inFlight atomic.Int64
}

// tryAcquire takes a slot if one is free and reports whether it did.
func (a *admission) tryAcquire() bool {
	if a.inFlight.Add(1) > a.max {
		a.inFlight.Add(-1)
		return false
	}
	return true
}

// release returns a slot taken by tryAcquire.
func (a *admission) release() { a.inFlight.Add(-1) }

// admit wraps an inference handler with admission control. When
// Config.MaxInFlight requests are already in flight it answers 503 with
// Retry-After immediately, before the body is read or anything decoded, so a
// refusal costs only the HTTP header parse and memory stays bounded by the
// admitted requests. The batcher's image bound (Config.Queue) still applies
// to admitted requests as a second line, for batches of many images.
func (s *Server) admit(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.admission.tryAcquire() {
			s.metrics.admissionRejected.Inc()
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, errOverloaded.Error())
			return
		}
		defer s.admission.release()
		next(w, r)
	}
}
