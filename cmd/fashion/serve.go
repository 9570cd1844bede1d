package main

import (
	"context"
	"errors"
	"io"
)

// runServe is a placeholder until the command lands.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
