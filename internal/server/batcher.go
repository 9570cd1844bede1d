package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// Errors the batcher returns instead of a prediction. Handlers answer both
// with 503 and a Retry-After header.
var (
	// errQueueFull means too many requests are already waiting for
	// inference; the caller should retry later instead of growing memory.
	errQueueFull = errors.New("inference queue is full, retry later")
	// errStopped means the server is shutting down.
	errStopped = errors.New("server is shutting down")
)

// job is one request's images waiting for a forward pass.
type job struct {
	ctx  context.Context
	x    []float32 // n×Pixels normalised inputs
	n    int
	out  []float32 // n×classes probabilities, written by the worker
	err  error
	done chan struct{} // closed by the worker when out or err is set
	// queued and taken are when the job entered and left the queue; taken
	// is written by the worker before done is closed.
	queued, taken time.Time
}

// batcher shares the model between concurrent requests: it collects queued
// jobs into batches of up to maxBatch images and runs one Predict per batch.
// A forming batch waits at most maxDelay for more jobs, and only while some
// request has announced images it is still decoding, so a lone request never
// pays the delay.
type batcher struct {
	pred     Predictor
	classes  int
	maxBatch int
	maxDelay time.Duration
	queue    chan *job
	// queued counts the images of the jobs in queue; admission is by
	// images, so one big batch request cannot hide behind a job count.
	queued    atomic.Int64
	maxQueued int64
	// pending counts images announced by handlers that have not reached the
	// queue yet (they are still reading or decoding).
	pending atomic.Int64
	metrics *serverMetrics
	log     *slog.Logger

	stopOnce sync.Once
	stop     chan struct{} // closed by close
	stopped  chan struct{} // closed when every worker has exited
}

func newBatcher(p Predictor, classes int, cfg Config, m *serverMetrics, log *slog.Logger) *batcher {
	b := &batcher{
		pred:      p,
		classes:   classes,
		maxBatch:  cfg.MaxBatch,
		maxDelay:  cfg.MaxDelay,
		queue:     make(chan *job, cfg.Queue),
		maxQueued: int64(cfg.Queue),
		metrics:   m,
		log:       log,
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
	}
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(b.work)
	}
	go func() {
		wg.Wait()
		b.failQueued()
		close(b.stopped)
	}()
	return b
}

// close stops the workers after the batch they are running and fails every
// job still queued. It is safe to call more than once.
func (b *batcher) close() {
	b.stopOnce.Do(func() { close(b.stop) })
	<-b.stopped
}

// queueLen reports how many jobs wait for a worker.
func (b *batcher) queueLen() int { return len(b.queue) }

// queuedImages reports how many images wait for a worker.
func (b *batcher) queuedImages() int64 { return b.queued.Load() }

// take records that j left the queue.
func (b *batcher) take(j *job) *job {
	j.taken = time.Now()
	b.queued.Add(-int64(j.n))
	return j
}

// ticket is a handler's announcement that images are on their way, so a
// forming batch is worth waiting for. Release it exactly once: submit does,
// and a deferred release covers every early return.
type ticket struct {
	b *batcher
	n int64
}

// announce tells the batcher that n images will be submitted soon.
func (b *batcher) announce(n int) ticket {
	b.pending.Add(int64(n))
	return ticket{b: b, n: int64(n)}
}

// release withdraws whatever the ticket still announces.
func (t *ticket) release() {
	if t.n != 0 {
		t.b.pending.Add(-t.n)
		t.n = 0
	}
}

// submit queues n normalised images x for inference and waits for their
// probabilities (n×classes, row-major). It fails fast with errQueueFull when
// the queued images would exceed the queue bound (a request larger than the
// bound is admitted only into an empty queue), and returns ctx's error if
// ctx ends first; x must then not be reused, since a worker may still read
// it.
func (b *batcher) submit(ctx context.Context, t *ticket, x []float32, n int) ([]float32, error) {
	probs, _, err := b.submitTimed(ctx, t, x, n)
	return probs, err
}

// submitTimed is submit that also reports how long the images waited in the
// queue for a worker.
func (b *batcher) submitTimed(ctx context.Context, t *ticket, x []float32, n int) ([]float32, time.Duration, error) {
	probs, j, err := b.enqueue(ctx, t, x, n)
	if j == nil {
		return probs, 0, err
	}
	select {
	case <-j.done:
		if !j.taken.IsZero() {
			return probs, j.taken.Sub(j.queued), err
		}
	default:
	}
	return probs, time.Since(j.queued), err
}

// enqueue is submit's body; it also returns the job, once queued.
func (b *batcher) enqueue(ctx context.Context, t *ticket, x []float32, n int) ([]float32, *job, error) {
	if t != nil {
		t.release()
	}
	if n <= 0 {
		return nil, nil, nil
	}
	if len(x) != n*modelfile.Pixels {
		return nil, nil, fmt.Errorf("batcher: %d input values for %d images, want %d", len(x), n, n*modelfile.Pixels)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	j := &job{ctx: ctx, x: x, n: n, done: make(chan struct{}), queued: time.Now()}
	select {
	case <-b.stop:
		return nil, nil, errStopped
	default:
	}
	if q := b.queued.Add(int64(n)); q > b.maxQueued && q != int64(n) {
		b.queued.Add(-int64(n))
		b.metrics.rejected.Inc()
		return nil, nil, errQueueFull
	}
	select {
	case b.queue <- j:
	default:
		b.queued.Add(-int64(n))
		b.metrics.rejected.Inc()
		return nil, nil, errQueueFull
	}
	select {
	case <-j.done:
		return j.out, j, j.err
	case <-ctx.Done():
		return nil, j, ctx.Err()
	case <-b.stopped:
		// The worker may have finished j just before stopping.
		select {
		case <-j.done:
			return j.out, j, j.err
		default:
			return nil, j, errStopped
		}
	}
}

// work is one worker's loop: form a batch, run it, repeat until stopped.
func (b *batcher) work() {
	batch := make([]*job, 0, b.maxBatch)
	xbuf := make([]float32, 0, b.maxBatch*modelfile.Pixels)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var carry *job // a job that did not fit the previous batch
	images := 0
	// add appends j unless its request is already gone, so abandoned
	// requests cost no inference.
	add := func(j *job) {
		if err := j.ctx.Err(); err != nil {
			b.metrics.cancelled.Inc()
			j.err = err
			close(j.done)
			return
		}
		batch = append(batch, j)
		images += j.n
	}
	for {
		batch = batch[:0]
		images = 0
		if carry != nil {
			add(carry)
			carry = nil
		}
		if len(batch) == 0 {
			select {
			case j := <-b.queue:
				add(b.take(j))
			case <-b.stop:
				return
			}
			if len(batch) == 0 {
				continue
			}
		}
		waiting := false
	gather:
		for images < b.maxBatch {
			select {
			case j := <-b.queue:
				b.take(j)
				if images+j.n > b.maxBatch {
					carry = j
					break gather
				}
				add(j)
				continue
			default:
			}
			// The queue is empty: wait for more only while other requests
			// are on their way, and never past maxDelay.
			if b.maxDelay <= 0 || b.pending.Load() <= 0 {
				break
			}
			if !waiting {
				timer.Reset(b.maxDelay)
				waiting = true
			}
			select {
			case j := <-b.queue:
				b.take(j)
				if images+j.n > b.maxBatch {
					carry = j
					break gather
				}
				add(j)
			case <-timer.C:
				waiting = false
				break gather
			case <-b.stop:
				break gather
			}
		}
		if waiting {
			timer.Stop()
		}
		if len(batch) > 0 {
			xbuf = b.run(batch, images, xbuf)
		}
	}
}

// run performs the forward passes for batch (images in total) and hands each
// job its rows. xbuf is scratch space for packing inputs; the possibly grown
// buffer is returned for reuse.
func (b *batcher) run(batch []*job, images int, xbuf []float32) []float32 {
	var x []float32
	if len(batch) == 1 {
		x = batch[0].x
	} else {
		xbuf = xbuf[:0]
		for _, j := range batch {
			xbuf = append(xbuf, j.x...)
		}
		x = xbuf
	}
	probs, err := b.predict(x, images)
	off := 0
	for _, j := range batch {
		if err != nil {
			j.err = err
		} else {
			j.out = probs[off : off+j.n*b.classes : off+j.n*b.classes]
			off += j.n * b.classes
		}
		close(j.done)
	}
	return xbuf
}

// predict runs the model on n images, in chunks of maxBatch when a single
// request brought more, and turns a panic in the model into an error so one
// bad batch cannot take the server down.
func (b *batcher) predict(x []float32, n int) (probs []float32, err error) {
	defer func() {
		if v := recover(); v != nil {
			b.log.Error("model panicked during inference", "panic", v, "images", n)
			probs, err = nil, fmt.Errorf("inference failed: model panicked: %v", v)
		}
	}()
	start := time.Now()
	if n <= b.maxBatch {
		probs, err = b.pred.Predict(x, n)
		if err == nil && len(probs) != n*b.classes {
			err = fmt.Errorf("inference failed: model returned %d values for %d images, want %d", len(probs), n, n*b.classes)
		}
	} else {
		probs = make([]float32, 0, n*b.classes)
		for i := 0; i < n && err == nil; i += b.maxBatch {
			m := min(b.maxBatch, n-i)
			var p []float32
			p, err = b.pred.Predict(x[i*modelfile.Pixels:(i+m)*modelfile.Pixels], m)
			if err == nil && len(p) != m*b.classes {
				err = fmt.Errorf("inference failed: model returned %d values for %d images, want %d", len(p), m, m*b.classes)
			}
			probs = append(probs, p...)
		}
	}
	b.metrics.inference.Observe(time.Since(start).Seconds())
	b.metrics.batchSize.Observe(float64(n))
	if err != nil {
		b.metrics.inferenceErrors.Inc()
		return nil, fmt.Errorf("inference on %d images: %w", n, err)
	}
	return probs, nil
}

// failQueued answers every job left in the queue after the workers stopped.
func (b *batcher) failQueued() {
	for {
		select {
		case j := <-b.queue:
			b.take(j)
			j.err = errStopped
			close(j.done)
		default:
			return
		}
	}
}
