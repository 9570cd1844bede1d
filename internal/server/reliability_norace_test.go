//go:build !race

package server

// raceEnabled relaxes the timing bounds of the reliability tests, since the
// race detector slows everything several times over.
const raceEnabled = false
