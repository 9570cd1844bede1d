package safefile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(small, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		max        int64
		want       error  // nil: the contents
		msg        string // in the error
	}{
		{"regular", small, 5, nil, ""},
		{"symlink to a regular file", link, 100, nil, ""},
		{"over the cap", small, 4, ErrTooLarge, "5 bytes, more than the cap of 4"},
		{"directory", dir, 100, ErrNotRegular, "a directory"},
		{"missing", filepath.Join(dir, "nope"), 100, os.ErrNotExist, ""},
	}
	if runtime.GOOS != "windows" {
		tests = append(tests, struct {
			name, path string
			max        int64
			want       error
			msg        string
		}{"/dev/zero", "/dev/zero", 1 << 30, ErrNotRegular, "a device, FIFO or socket"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := ReadFile(context.Background(), tt.path, tt.max)
			if tt.want == nil {
				if err != nil || string(data) != "hello" {
					t.Fatalf("ReadFile = %q, %v; want hello", data, err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("ReadFile error = %v, want %v mentioning %q", err, tt.want, tt.msg)
			}
			if data != nil {
				t.Errorf("ReadFile returned %d bytes with its error", len(data))
			}
		})
	}
}
