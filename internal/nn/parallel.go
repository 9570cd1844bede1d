package nn

import (
	"runtime"
	"sync"
)

// parallelFor splits [0, n) into contiguous chunks, one per available CPU,
// and runs fn on each concurrently. Work below minPer items per goroutine
// runs inline, because goroutine start-up would cost more than it saves.
func parallelFor(n, minPer int, fn func(lo, hi int)) {
	parallelWorkers(n, minPer, func(_, lo, hi int) { fn(lo, hi) })
}

// parallelWorkers is parallelFor that also tells fn which worker (0, 1, …,
// workers−1) it is, so workers can keep private buffers and partial sums.
// It returns how many workers ran.
func parallelWorkers(n, minPer int, fn func(worker, lo, hi int)) int {
	workers := numWorkers()
	if minPer < 1 {
		minPer = 1
	}
	if w := n / minPer; w < workers {
		workers = w
	}
	if workers <= 1 {
		fn(0, 0, n)
		return 1
	}
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	w := 0
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			fn(w, lo, hi)
		}(w)
		w++
	}
	wg.Wait()
	return w
}

// numWorkers is how many goroutines parallel work is split between: one
// per CPU the Go scheduler may use.
func numWorkers() int { return runtime.GOMAXPROCS(0) }
