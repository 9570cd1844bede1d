//go:build unix

package safefile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestReadFileRefusesFIFOAtOnce(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := ReadFile(context.Background(), fifo, 1<<20)
	if !errors.Is(err, ErrNotRegular) {
		t.Fatalf("ReadFile(FIFO) error = %v, want ErrNotRegular", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing a FIFO took %v", d)
	}
}

// TestReadBlockedIsCancellable opens a FIFO past the type check, as a file
// swapped in after it would be: the open blocks until a writer appears,
// and cancelling ctx must end ReadFile's wait anyway.
func TestReadBlockedIsCancellable(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		// What ReadFile does after its check by name.
		_, err := readCtx(ctx, fifo, 1<<20)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("cancelled read returned after %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked read ignored the cancelled context")
	}
	// Unblock the leftover open so the test leaves no goroutine behind.
	if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
		w.Close()
	}
}
