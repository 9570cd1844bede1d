package main

import (
	"context"
	"errors"
	"io"
)

// runPredict is a placeholder until the command lands.
func runPredict(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
