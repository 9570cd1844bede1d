package server

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"

	"github.com/fashion-classifier/fashion/internal/imageprep"
)

// Memory the server plans for, beside the budgets it derives. The figures
// are measured upper bounds on this code, not guesses about the machine:
// an idle server with the shipped model has an RSS of about 30 MiB, an open
// connection without a request in progress costs a goroutine and its
// buffers (about 12 KiB, measured with 20,000 idle connections; we plan
// for 32 KiB), and decodeMemory is the worst-case working memory of
// preparing one image: imageprep's decoder budget plus the reduction's
// buffers and the 28×28 result.
const (
	baseMemory   = 48 << 20
	connMemory   = 32 << 10
	decodeMemory = imageprep.DefaultMaxBytes + 16<<20
)

// Defaults used when no memory limit is known (Config.MemoryLimit 0), and
// ceilings for the derived ones on a large machine, where other limits
// (file descriptors, the CPU to serve them) come first.
const (
	noLimitBodies   = 8    // max-size bodies in flight
	noLimitMaxConns = 4096 // open connections
	maxBodies       = 64
	maxConnsCeiling = 8192
)

// MemoryLimit returns the memory the process may use and where that figure
// comes from: the smallest of the runtime's soft limit (GOMEMLIMIT, or the
// one SetMemoryLimit derived), the cgroup's limit (v2 memory.max or v1
// memory.limit_in_bytes) and the machine's physical memory; 0 and "none"
// when none is known.
func MemoryLimit() (int64, string) {
	limit, source := int64(0), "none"
	consider := func(l int64, from string) {
		if l > 0 && l < math.MaxInt64 && (limit == 0 || l < limit) {
			limit, source = l, from
		}
	}
	consider(debug.SetMemoryLimit(-1), "GOMEMLIMIT")
	if l, err := memlimit.FromCgroup(); err == nil && l <= math.MaxInt64 {
		consider(int64(l), "cgroup")
	}
	if l, err := memlimit.FromSystem(); err == nil && l <= math.MaxInt64 {
		consider(int64(l), "physical memory")
	}
	return limit, source
}

// SetMemoryLimit sets the runtime's soft memory limit to 90% of the
// cgroup's limit when GOMEMLIMIT is not set, so the garbage collector works
// harder before the kernel's OOM killer would. It returns the limit in
// force afterwards (math.MaxInt64 when none). Not running in a cgroup is
// not an error.
func SetMemoryLimit() (int64, error) {
	l, err := memlimit.Set()
	if err != nil && !errors.Is(err, memlimit.ErrNoCgroup) {
		return l, fmt.Errorf("deriving GOMEMLIMIT from the cgroup: %w", err)
	}
	return l, nil
}

// sizeForMemory fills the budgets left at zero from c.MemoryLimit: of what
// the limit leaves beside baseMemory, half goes to decoding (MaxDecodes
// images at decodeMemory each, at most GOMAXPROCS since decoding is CPU
// bound), three tenths to the bytes of bodies in flight (BodyBudget, at
// least what one max-size body needs while its buffer grows) and a fifth
// to open connections (MaxConns at connMemory each), each within a ceiling.
func (c Config) sizeForMemory() Config {
	procs := runtime.GOMAXPROCS(0)
	minBudget := 2*c.MaxBody + 4*leaseOverhead
	if c.MemoryLimit <= 0 {
		if c.MaxDecodes <= 0 {
			c.MaxDecodes = procs
		}
		if c.BodyBudget <= 0 {
			c.BodyBudget = max(noLimitBodies*c.MaxBody, minBudget)
		}
		if c.MaxConns <= 0 {
			c.MaxConns = noLimitMaxConns
		}
		return c
	}
	avail := max(c.MemoryLimit-baseMemory, 0)
	if c.MaxDecodes <= 0 {
		c.MaxDecodes = int(min(max(avail/2/decodeMemory, 1), int64(procs)))
	}
	if c.BodyBudget <= 0 {
		c.BodyBudget = max(min(avail*3/10, maxBodies*c.MaxBody), minBudget)
	}
	if c.MaxConns <= 0 {
		c.MaxConns = int(min(max(avail/5/connMemory, 64), maxConnsCeiling))
	}
	return c
}

// logBudget says at start-up how the memory is shared out, and warns when
// the plan does not fit the limit.
func (s *Server) logBudget() {
	c := s.cfg
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	planned := baseMemory + int64(c.MaxDecodes)*decodeMemory + c.BodyBudget + int64(c.MaxConns)*connMemory
	attrs := []any{
		"memory_limit", mib(c.MemoryLimit),
		"planned", mib(planned),
		"base", mib(baseMemory),
		"body_budget", mib(c.BodyBudget),
		"max_body", mib(c.MaxBody),
		"max_size_bodies_at_once", c.BodyBudget / (2 * c.MaxBody),
		"max_decodes", c.MaxDecodes,
		"decode_worst_case", mib(decodeMemory),
		"max_conns", c.MaxConns,
		"max_fetches", c.MaxFetches,
	}
	if c.MemoryLimit <= 0 {
		s.log.Info("memory budget (no memory limit known; fixed defaults)", attrs...)
		return
	}
	if planned > c.MemoryLimit {
		s.log.Warn("memory budget exceeds the memory limit: lower -max-body, -body-budget or -max-conns", attrs...)
		return
	}
	s.log.Info("memory budget", attrs...)
}
