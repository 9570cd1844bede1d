package nn

import (
	"fmt"
	"sync"
	"testing"
)

// TestParallelWorkersCoversRange checks that every index is visited
// exactly once, that worker numbers are in range and that no worker runs
// two ranges at once.
func TestParallelWorkersCoversRange(t *testing.T) {
	for _, tc := range []struct{ n, minPer int }{{0, 1}, {1, 1}, {7, 1}, {100, 3}, {1000, 1}, {5, 10}} {
		t.Run(fmt.Sprintf("n%d_min%d", tc.n, tc.minPer), func(t *testing.T) {
			seen := make([]int, tc.n)
			var mu sync.Mutex
			busy := map[int]bool{}
			workers := parallelWorkers(tc.n, tc.minPer, func(w, lo, hi int) {
				mu.Lock()
				if busy[w] {
					t.Errorf("worker %d runs two ranges at once", w)
				}
				busy[w] = true
				mu.Unlock()
				for i := lo; i < hi; i++ {
					seen[i]++
				}
				mu.Lock()
				busy[w] = false
				mu.Unlock()
				if w < 0 || w >= numWorkers() {
					t.Errorf("worker number %d out of range", w)
				}
			})
			if workers < 1 || workers > numWorkers() {
				t.Errorf("%d workers", workers)
			}
			for i, c := range seen {
				if c != 1 {
					t.Fatalf("index %d visited %d times", i, c)
				}
			}
		})
	}
}
