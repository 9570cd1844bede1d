//go:build !unix

package main

import "testing"

// specialFiles has no devices or FIFOs to offer off Unix.
func specialFiles(t *testing.T, dir string) []struct{ name, path, want string } { return nil }
