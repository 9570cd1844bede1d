//go:build !race

package idx

// raceEnabled reports whether the test binary runs under the race
// detector, which slows decompression of the real dataset to minutes.
const raceEnabled = false
