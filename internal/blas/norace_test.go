//go:build !race

package blas

// raceEnabled reports a -race build; see race_test.go.
const raceEnabled = false
