//go:build !amd64

package main

// fmaStep reports that this architecture has no peak loop.
func fmaStep(int) (float64, bool) { return 0, false }

// peakLoop names the loop fmaStep runs.
func peakLoop() string { return "none" }
