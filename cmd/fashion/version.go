package main

import (
	"context"
	"errors"
	"io"
)

// runVersion is a placeholder until the command lands.
func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
