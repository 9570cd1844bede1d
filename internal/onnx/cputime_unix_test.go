//go:build unix

package onnx

import (
	"syscall"
	"time"
)

// cpuTime is the user and system CPU time the process has used so far.
// Benchmarks report throughput per CPU-second as well as per second: on a
// machine shared with other jobs the wall clock says more about them than
// about the code.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
