// Package parallel is the one way the project splits work between
// goroutines: a pool-free fork-join over a fixed number of workers, where
// the calling goroutine is one of them and tasks are handed out from an
// atomic counter. Every kernel (GEMM, convolutions, pooling, batch norm,
// optimiser updates) goes through it.
//
// Nothing here allocates per task or sends on a channel (the one channel
// of a section is only closed), so a section can never block on a full
// buffer whatever GOMAXPROCS or the amount of work is.
package parallel

import (
	"runtime"
	"sync/atomic"
)

// Workers is how many goroutines parallel work is split between by
// default: one per CPU the Go scheduler may use (GOMAXPROCS).
func Workers() int { return runtime.GOMAXPROCS(0) }

// Run calls fn(worker, task) for every task in [0, tasks) on up to threads
// goroutines, the caller being worker 0. Tasks are handed out in order from
// an atomic counter, so a worker slowed down by other load simply takes
// fewer of them. worker is in [0, min(threads, tasks)) and identifies the
// goroutine, so fn may use per-worker scratch space and partial sums
// without locking; a worker may also take no task at all. Run returns
// once every task has finished, without waiting for helper goroutines
// that took none: on a busy machine a helper may start only after the
// caller has done all the work, and waiting for it to start and leave
// would add the scheduler's delay to every section. Run returns how many
// workers it started (at least 1 when tasks > 0, else 0).
func Run(threads, tasks int, fn func(worker, task int)) int {
	threads = min(threads, tasks)
	if threads <= 1 {
		for t := range tasks {
			fn(0, t)
		}
		return min(tasks, 1)
	}
	var next, done atomic.Int64
	finished := make(chan struct{})
	run := func(w int) {
		for {
			t := int(next.Add(1) - 1)
			if t >= tasks {
				return
			}
			fn(w, t)
			if int(done.Add(1)) == tasks {
				close(finished)
			}
		}
	}
	for w := 1; w < threads; w++ {
		go run(w)
	}
	run(0)
	<-finished
	return threads
}

// For splits [0, n) into contiguous ranges, one per worker (Workers), and
// runs fn on each concurrently. Below minPer items per range it uses fewer
// workers, down to running fn(0, n) inline: starting a goroutine costs
// more than a few microseconds of work saves.
func For(n, minPer int, fn func(lo, hi int)) {
	ForWorker(n, minPer, func(_, lo, hi int) { fn(lo, hi) })
}

// ForWorker is For that also tells fn which worker (0 … used−1) runs the
// range, so workers can keep private buffers and partial sums. Each range
// has its own worker number and every number below the returned count
// (0 for n ≤ 0) is used exactly once, so per-worker buffers need no
// clearing between calls beyond what fn does.
func ForWorker(n, minPer int, fn func(worker, lo, hi int)) int {
	if n <= 0 {
		return 0
	}
	workers := Split(n, minPer)
	per := (n + workers - 1) / workers
	ranges := (n + per - 1) / per
	Run(ranges, ranges, func(_, t int) {
		fn(t, t*per, min((t+1)*per, n))
	})
	return ranges
}

// Split is the number of workers For uses for n items of at least minPer
// each: between 1 and Workers().
func Split(n, minPer int) int {
	return max(1, min(Workers(), n/max(minPer, 1)))
}
