package main

import (
	"context"
	"errors"
	"io"
)

// runEval is a placeholder until the command lands.
func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
