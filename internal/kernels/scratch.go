package kernels

// Scratch is the one allocator of kernels' temporary memory: per-worker,
// per-slot float32 buffers that grow to the largest size asked for and are
// then reused, so a steady stream of same-shaped calls allocates nothing.
// The zero value is ready to use. A Scratch belongs to one caller at a
// time (one training network, one inference run); within a parallel
// section, worker w may use its own buffers concurrently with the other
// workers' once Reserve has made room for all of them.
type Scratch struct {
	bufs [][]float32 // worker·scratchSlots + slot
}

// The slots a kernel may use per worker.
const (
	slotA = iota // unfolded patches, padded input
	slotB        // unfolded or padded gradient, padded output
	slotC        // padded input gradient, output blocks to pool from
	slotD        // weight gradient partial sums
	slotE        // flipped weights (worker 0 only, shared read-only)
	scratchSlots
)

// Reserve makes room for workers workers, so that they can then call
// Floats concurrently. It must not run concurrently with Floats.
func (s *Scratch) Reserve(workers int) {
	if n := workers * scratchSlots; len(s.bufs) < n {
		s.bufs = append(s.bufs, make([][]float32, n-len(s.bufs))...)
	}
}

// Floats returns worker's buffer for slot with length n, reallocating it
// only when its capacity is short. Its contents are not cleared. A nil
// Scratch returns fresh memory.
func (s *Scratch) Floats(worker, slot, n int) []float32 {
	if s == nil {
		return make([]float32, n)
	}
	s.Reserve(worker + 1)
	return Grow(&s.bufs[worker*scratchSlots+slot], n)
}

// Grow returns (*buf)[:n], reallocating when the capacity is short. The
// contents are not cleared.
func Grow(buf *[]float32, n int) []float32 {
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	*buf = (*buf)[:n]
	return *buf
}
