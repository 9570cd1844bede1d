//go:build !amd64

package main

// fmaStep reports that this architecture has no peak loop.
func fmaStep(int) (float32, bool) { return 0, false }

const flopsPerStep = 1
