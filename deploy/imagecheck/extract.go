package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// maxRootfsSize bounds the bytes extracted from an image, far above what the
// fashion image holds, so a malformed or hostile tar cannot fill the disk.
const maxRootfsSize = 1 << 30

// extractRootfs unpacks the flattened image filesystem read from r into dir,
// which must exist, writing at most limit bytes of file content. Only directories and regular files are accepted; links,
// devices, absolute paths and paths leaving dir are errors, because the
// result becomes the root of a process. Permission bits and the sticky bit
// are kept; setuid and setgid bits are dropped.
func extractRootfs(r io.Reader, dir string, limit int64) error {
	tr := tar.NewReader(r)
	var total int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading image filesystem: %w", err)
		}
		name, err := entryPath(hdr.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue // the root directory itself
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		mode := fs.FileMode(hdr.Mode).Perm()
		if hdr.Mode&0o1000 != 0 {
			mode |= fs.ModeSticky
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return fmt.Errorf("creating %s: %w", name, err)
			}
		case tar.TypeReg:
			// Size is the file's expanded size, holes of sparse files
			// included, so the limit bounds what reaches the disk.
			if hdr.Size < 0 || hdr.Size > limit-total {
				return fmt.Errorf("image file %s: size %d would take the filesystem past %d bytes", name, hdr.Size, limit)
			}
			total += hdr.Size
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return fmt.Errorf("creating directory of %s: %w", name, err)
			}
			if err := writeNew(dst, tr, hdr.Size); err != nil {
				return fmt.Errorf("image file %s: %w", name, err)
			}
		default:
			return fmt.Errorf("image entry %s: type %q is not a directory or regular file", name, hdr.Typeflag)
		}
		// Chmod after creation: the process umask must not change the
		// modes the image declares.
		if err := os.Chmod(dst, mode); err != nil {
			return fmt.Errorf("setting mode of %s: %w", name, err)
		}
	}
}

// entryPath validates a tar entry name and returns it as a clean relative
// slash path ("" for the root).
func entryPath(name string) (string, error) {
	if strings.ContainsRune(name, 0) || strings.Contains(name, `\`) {
		return "", fmt.Errorf("image entry %q: name has a NUL or backslash", name)
	}
	clean := strings.TrimPrefix(path.Clean("/"+strings.TrimPrefix(name, "./")), "/")
	for p := range strings.SplitSeq(strings.TrimSuffix(strings.TrimPrefix(name, "./"), "/"), "/") {
		if p == ".." {
			return "", fmt.Errorf("image entry %q: path leaves the filesystem root", name)
		}
	}
	if path.IsAbs(name) {
		return "", fmt.Errorf("image entry %q: path is absolute", name)
	}
	return clean, nil
}

// writeNew creates path (which must not exist, so an earlier entry cannot
// redirect the write) and copies exactly size bytes from r into it.
func writeNew(path string, r io.Reader, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(r, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("truncated: got %d of %d bytes", n, size)
	}
	return err
}
