package nn

import (
	"runtime"
	"sync"
)

// parallelFor splits [0, n) into contiguous chunks, one per available CPU,
// and runs fn on each concurrently. Work below minPer items per goroutine
// runs inline, because goroutine start-up would cost more than it saves.
func parallelFor(n, minPer int, fn func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if minPer < 1 {
		minPer = 1
	}
	if w := n / minPer; w < workers {
		workers = w
	}
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}
