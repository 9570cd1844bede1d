//go:build !linux

package cputime

import "time"

// Process reports that process CPU time is not measured on this
// system.
func Process() (time.Duration, bool) { return 0, false }
