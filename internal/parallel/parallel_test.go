package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunCoversEveryTaskOnce(t *testing.T) {
	for _, tc := range []struct{ threads, tasks int }{
		{1, 0}, {1, 5}, {4, 0}, {4, 1}, {4, 3}, {3, 17}, {8, 1000}, {200, 129},
	} {
		seen := make([]atomic.Int32, tc.tasks)
		var maxWorker atomic.Int32
		used := Run(tc.threads, tc.tasks, func(w, task int) {
			seen[task].Add(1)
			for {
				m := maxWorker.Load()
				if int32(w) <= m || maxWorker.CompareAndSwap(m, int32(w)) {
					break
				}
			}
		})
		for i := range seen {
			if n := seen[i].Load(); n != 1 {
				t.Errorf("Run(%d, %d): task %d ran %d times", tc.threads, tc.tasks, i, n)
			}
		}
		if want := min(tc.threads, tc.tasks); used != max(want, min(tc.tasks, 1)) {
			t.Errorf("Run(%d, %d) used %d workers, want %d", tc.threads, tc.tasks, used, want)
		}
		if int(maxWorker.Load()) >= max(used, 1) {
			t.Errorf("Run(%d, %d): worker index %d ≥ %d workers", tc.threads, tc.tasks, maxWorker.Load(), used)
		}
	}
}

func TestForWorkerCoversRange(t *testing.T) {
	for _, n := range []int{0, 1, 7, 64, 1001} {
		for _, minPer := range []int{0, 1, 3, 100, 5000} {
			hits := make([]atomic.Int32, n)
			used := ForWorker(n, minPer, func(w, lo, hi int) {
				if lo >= hi {
					t.Errorf("n=%d minPer=%d: empty range [%d, %d)", n, minPer, lo, hi)
				}
				for i := lo; i < hi; i++ {
					hits[i].Add(1)
				}
			})
			for i := range hits {
				if hits[i].Load() != 1 {
					t.Fatalf("n=%d minPer=%d: item %d covered %d times", n, minPer, i, hits[i].Load())
				}
			}
			if used > Workers() || (n > 0 && used < 1) {
				t.Errorf("n=%d minPer=%d: %d workers", n, minPer, used)
			}
		}
	}
}

// TestManyProcs runs sections with far more workers than CPUs and more
// work items than any fixed-size buffer would hold; they must all return.
func TestManyProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(128))
	done := make(chan struct{})
	go func() {
		defer close(done)
		var sum atomic.Int64
		For(128, 1, func(lo, hi int) { sum.Add(int64(hi - lo)) })
		ForWorker(100000, 1, func(_, lo, hi int) { sum.Add(int64(hi - lo)) })
		if got := sum.Load(); got != 100128 {
			t.Errorf("covered %d items, want 100128", got)
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("parallel sections at GOMAXPROCS=128 did not return")
	}
}

// TestRunConcurrentAndNested runs sections from many goroutines at once,
// each task starting a nested section, and checks that every task runs
// once and that no worker number of a section is held by two goroutines
// at the same time (per-worker scratch would be shared otherwise).
func TestRunConcurrentAndNested(t *testing.T) {
	const callers, tasks, inner = 8, 37, 5
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for c := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for round := range 20 {
					threads := 2 + (c+round)%4
					var busy [8]atomic.Bool
					var ran [tasks]atomic.Int32
					var innerRuns atomic.Int32
					Run(threads, tasks, func(w, task int) {
						if w < 0 || w >= threads {
							t.Errorf("worker %d of %d", w, threads)
							return
						}
						if !busy[w].CompareAndSwap(false, true) {
							t.Errorf("worker %d of a section is running two tasks at once", w)
						}
						ran[task].Add(1)
						time.Sleep(20 * time.Microsecond) // let other workers join
						Run(2, inner, func(_, _ int) { innerRuns.Add(1) })
						busy[w].Store(false)
					})
					for i := range ran {
						if n := ran[i].Load(); n != 1 {
							t.Errorf("task %d ran %d times", i, n)
						}
					}
					if n := innerRuns.Load(); n != tasks*inner {
						t.Errorf("nested sections ran %d tasks, want %d", n, tasks*inner)
					}
				}
			}()
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("concurrent nested sections did not return")
	}
}

// TestRunWaitsForSlowTasks has a helper's task outlast the time the
// caller looks for the end before it blocks, in both orders (the caller's
// own task slow, then a helper's): Run must return only after every task
// has finished.
func TestRunWaitsForSlowTasks(t *testing.T) {
	for _, slow := range []int{0, 1} {
		for range 20 {
			var done atomic.Int32
			Run(2, 2, func(_, task int) {
				if task == slow {
					time.Sleep(4 * spin)
				}
				done.Add(1)
			})
			if n := done.Load(); n != 2 {
				t.Fatalf("slow task %d: Run returned with %d of 2 tasks done", slow, n)
			}
		}
	}
}
