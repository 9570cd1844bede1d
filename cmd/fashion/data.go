package main

import (
	"context"
	"errors"
	"io"
)

// runData is a placeholder until the command lands.
func runData(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
