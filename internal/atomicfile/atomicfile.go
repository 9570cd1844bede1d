// Package atomicfile writes files so that a reader never sees half of one:
// the data goes to a temporary file in the destination's directory, which
// is synced and then renamed over the destination.
//
// Unlike os.CreateTemp, whose files are always mode 0600, the temporary
// file is created with mode 0666 filtered by the process umask, the mode
// os.Create would give the final file. A model written by "fashion train"
// under the usual umask 022 is therefore 0644 and readable by the
// container's non-root user.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// Mode is the permission requested for new files; the umask applies.
const Mode fs.FileMode = 0o666

// File is a file being written under a temporary name next to its
// destination. Write to it, then call Commit or CommitAs; call Discard
// (deferred) to remove it on every path that does not commit.
type File struct {
	*os.File
	path string // destination
	done bool   // committed or discarded
}

// Create starts writing path: it creates an empty temporary file in path's
// directory, named ".<base>.<random>.tmp", with mode 0666 less the umask.
func Create(path string) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	for try := 0; ; try++ {
		name := filepath.Join(dir, "."+base+"."+strconv.FormatUint(rand.Uint64(), 36)+".tmp")
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, Mode)
		if err == nil {
			return &File{File: f, path: path}, nil
		}
		if !errors.Is(err, fs.ErrExist) || try == 100 {
			return nil, fmt.Errorf("creating temporary file for %s: %w", path, err)
		}
	}
}

// Commit syncs and closes the temporary file and renames it to the
// destination given to Create.
func (f *File) Commit() error { return f.CommitAs(f.path) }

// CommitAs is Commit with another destination, which must be in the same
// directory (a downloader that learns the file's real name only from its
// content uses it).
func (f *File) CommitAs(path string) error {
	if f.done {
		return fmt.Errorf("committing %s: already committed or discarded", path)
	}
	if err := f.Sync(); err != nil {
		f.Discard()
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		f.Discard()
		return fmt.Errorf("closing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		f.Discard()
		return fmt.Errorf("moving %s into place: %w", path, err)
	}
	f.done = true
	// Make the rename durable; best effort on file systems that refuse to
	// sync a directory.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Discard closes and removes the temporary file unless it was committed.
// It is safe to defer right after Create.
func (f *File) Discard() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
}

// Write writes path atomically with the bytes write produces. On any error
// the destination is left as it was.
func Write(path string, write func(io.Writer) error) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Discard()
	if err := write(f); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Commit()
}

// WriteFile writes data to path atomically.
func WriteFile(path string, data []byte) error {
	return Write(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}
