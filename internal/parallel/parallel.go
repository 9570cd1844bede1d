// Package parallel is the one way the project splits work between
// goroutines: a fork-join over a fixed number of workers, where the
// calling goroutine is one of them and tasks are handed out from an
// atomic counter. Every kernel (GEMM, convolutions, pooling, batch norm,
// optimiser updates) goes through it.
//
// The other workers are helper goroutines kept for the life of the
// process, started as sections first ask for them. After a section a
// helper keeps looking for the next one for a short while (spin) before
// it sleeps: one inference runs a dozen sections of 10–200 µs each, and
// waking a sleeping thread for every one of them cost as much as the work
// it took over. The caller, once out of tasks, likewise looks for the
// section's end for that time before it blocks. A section never waits for a helper to arrive: the caller
// takes every task no helper has taken, so sections nest, and run
// concurrently from many goroutines, without deadlock whatever
// GOMAXPROCS or the number of helpers is. Nothing here sends on a
// channel (the one channel of a section is only closed).
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
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
// once every task has finished, without waiting for helpers that took
// none: on a busy machine a helper may arrive only after the caller has
// done all the work. Run returns how many worker numbers it may have
// used (at least 1 when tasks > 0, else 0).
func Run(threads, tasks int, fn func(worker, task int)) int {
	threads = min(threads, tasks)
	if threads <= 1 {
		for t := range tasks {
			fn(0, t)
		}
		return min(tasks, 1)
	}
	s := &section{fn: fn, tasks: tasks, threads: threads, seats: threads - 1, finished: make(chan struct{})}
	helpers.post(s)
	s.work(0)
	helpers.withdraw(s)
	s.wait()
	return threads
}

// section is one call of Run.
type section struct {
	fn         func(worker, task int)
	tasks      int
	next, done atomic.Int64
	threads    int
	// seats is how many helper worker numbers are still free (guarded
	// by helpers.mu); the next helper to join is worker threads−seats.
	seats    int
	finished chan struct{} // closed when done reaches tasks
}

// work runs tasks of s as worker w until none is left.
func (s *section) work(w int) {
	for {
		t := int(s.next.Add(1) - 1)
		if t >= s.tasks {
			return
		}
		s.fn(w, t)
		if int(s.done.Add(1)) == s.tasks {
			close(s.finished)
		}
	}
}

// wait returns once every task of s has finished. Like a helper, it
// looks for the end for the spin time before it blocks: a caller that
// blocks gives up its thread, and the helper that finishes the section
// then hands the caller to its own thread, leaving the helper queued
// until an idle thread wakes up (on a virtual machine, tens of
// microseconds; measured on a 2-core KVM guest: two 20 µs tasks took
// 40–90 µs, the helper often joining only after the caller had done
// both).
func (s *section) wait() {
	deadline := time.Now().Add(spin)
	for i := 0; s.done.Load() < int64(s.tasks); i++ {
		if i%16 == 15 && time.Now().After(deadline) {
			<-s.finished
			return
		}
		runtime.Gosched()
	}
}

// spin is how long a helper looks for a new section before it sleeps:
// longer than the gaps between the sections of one inference, short
// enough that an idle process soon uses no CPU.
const spin = 50 * time.Microsecond

// pool is the set of helper goroutines and the sections that want them.
type pool struct {
	mu      sync.Mutex
	wake    sync.Cond // signalled when a section is posted; L is &mu
	open    []*section
	posted  atomic.Int32 // len(open), for helpers that spin without the lock
	sleep   int          // helpers waiting on wake
	started int          // helpers started so far
}

// helpers serves every Run of the process, as the Go scheduler serves
// every goroutine: sections from any caller share them.
var helpers = newPool()

func newPool() *pool {
	p := &pool{}
	p.wake.L = &p.mu
	return p
}

// post offers s's helper seats, starting helpers until there are
// threads−1 of them and waking sleeping ones.
func (p *pool) post(s *section) {
	p.mu.Lock()
	p.open = append(p.open, s)
	p.posted.Store(int32(len(p.open)))
	for ; p.started < s.seats; p.started++ {
		go p.helper()
	}
	for range min(p.sleep, s.seats) {
		p.wake.Signal()
	}
	p.mu.Unlock()
}

// withdraw stops offering s's remaining seats: its caller has taken
// every task.
func (p *pool) withdraw(s *section) {
	p.mu.Lock()
	p.remove(s)
	p.mu.Unlock()
}

// remove deletes s from the open sections; p.mu is held.
func (p *pool) remove(s *section) {
	for i, o := range p.open {
		if o == s {
			p.open = append(p.open[:i], p.open[i+1:]...)
			p.open[len(p.open):cap(p.open)][0] = nil // not keep s alive
			break
		}
	}
	p.posted.Store(int32(len(p.open)))
}

// claim takes a seat of the oldest open section, returning the section
// and the worker number, or nil; p.mu is held.
func (p *pool) claim() (*section, int) {
	if len(p.open) == 0 {
		return nil, 0
	}
	s := p.open[0]
	w := s.threads - s.seats
	if s.seats--; s.seats == 0 {
		p.remove(s)
	}
	return s, w
}

// helper runs sections' tasks for the life of the process.
func (p *pool) helper() {
	for {
		s, w := p.next()
		s.work(w)
	}
}

// next returns the next section to help with: it looks for one for the
// spin time, yielding to other goroutines in between, then sleeps until
// one is posted.
func (p *pool) next() (*section, int) {
	deadline := time.Now().Add(spin)
	for i := 0; ; i++ {
		if p.posted.Load() > 0 {
			p.mu.Lock()
			s, w := p.claim()
			p.mu.Unlock()
			if s != nil {
				return s, w
			}
		}
		if i%16 == 15 && time.Now().After(deadline) {
			break
		}
		runtime.Gosched()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if s, w := p.claim(); s != nil {
			return s, w
		}
		p.sleep++
		p.wake.Wait()
		p.sleep--
	}
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
