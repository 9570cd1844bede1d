// Package safefile reads files named by users (flags, environment
// variables) without trusting what the name points at: only regular files
// are read, never more than a size cap, and a caller can give up on a read
// that blocks. So `-model /dev/zero` is refused instead of read until the
// process is killed for memory, and a FIFO nobody writes to is refused
// instead of hanging the program beyond SIGTERM.
package safefile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Errors returned (wrapped) by ReadFile.
var (
	// ErrNotRegular is returned for a device, FIFO, socket or directory.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge is returned for a file over the size cap.
	ErrTooLarge = errors.New("file too large")
)

// ReadFile returns the contents of the regular file at path, refusing
// anything else and any file over maxBytes before reading it. The file is
// checked twice, by name before opening and through the open descriptor,
// so one swapped in between is refused too. Opening and reading run on a
// separate goroutine: when ctx ends first (SIGTERM while a network file
// system stalls, say), ReadFile returns ctx's error at once and leaves the
// goroutine to finish and drop what it read.
func ReadFile(ctx context.Context, path string, maxBytes int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := check(path, fi, maxBytes); err != nil {
		return nil, err
	}
	return readCtx(ctx, path, maxBytes)
}

// readCtx runs read on its own goroutine and returns when it does or when
// ctx ends, whichever is first.
func readCtx(ctx context.Context, path string, maxBytes int64) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, err := read(path, maxBytes)
		done <- result{data, err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("reading %s: %w", path, context.Cause(ctx))
	}
}

// check refuses what ReadFile must not read, from its file information.
func check(path string, fi os.FileInfo, maxBytes int64) error {
	if !fi.Mode().IsRegular() {
		kind := "a device, FIFO or socket"
		if fi.IsDir() {
			kind = "a directory"
		}
		return fmt.Errorf("%s is %s (%v), refusing to read it: %w", path, kind, fi.Mode().Type(), ErrNotRegular)
	}
	if fi.Size() > maxBytes {
		return fmt.Errorf("%s is %d bytes, more than the cap of %d: %w", path, fi.Size(), maxBytes, ErrTooLarge)
	}
	return nil
}

// read opens path, checks the open file again and reads at most maxBytes.
func read(path string, maxBytes int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := check(path, fi, maxBytes); err != nil {
		return nil, err
	}
	// The size can change after the check: read one byte past the cap to
	// notice a file that grew.
	data, err := io.ReadAll(io.LimitReader(f, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(data)) > maxBytes {
		return nil, fmt.Errorf("%s grew past the cap of %d bytes while being read: %w", path, maxBytes, ErrTooLarge)
	}
	return data, nil
}
