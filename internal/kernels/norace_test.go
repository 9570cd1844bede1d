//go:build !race

package kernels

// raceEnabled reports a -race build; see race_test.go.
const raceEnabled = false
