package main

import (
	"archive/tar"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tarOf builds a tar stream from headers; regular files get body as content.
func tarOf(t testing.TB, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		body := []byte(nil)
		if h.Typeflag == tar.TypeReg {
			body = bytes.Repeat([]byte("x"), int(h.Size))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtractRootfs(t *testing.T) {
	reg := func(name string, mode int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: 3}
	}
	dir := func(name string, mode int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode}
	}
	tests := []struct {
		name    string
		hdrs    []*tar.Header
		want    map[string]fs.FileMode // path → mode, checked when no error
		wantErr string
	}{
		{
			name: "files, directories and modes",
			hdrs: []*tar.Header{dir("./", 0o755), dir("etc/", 0o755), reg("etc/passwd", 0o644), reg("fashion", 0o755), dir("tmp/", 0o1777), reg("deep/er/file", 0o600)},
			want: map[string]fs.FileMode{"etc/passwd": 0o644, "fashion": 0o755, "tmp": fs.ModeDir | fs.ModeSticky | 0o777, "deep/er/file": 0o600},
		},
		{
			name: "setuid bit is dropped",
			hdrs: []*tar.Header{reg("suid", 0o4755)},
			want: map[string]fs.FileMode{"suid": 0o755},
		},
		{name: "parent escape", hdrs: []*tar.Header{reg("../evil", 0o644)}, wantErr: "leaves the filesystem root"},
		{name: "inner escape", hdrs: []*tar.Header{reg("a/../../evil", 0o644)}, wantErr: "leaves the filesystem root"},
		{name: "absolute path", hdrs: []*tar.Header{reg("/etc/passwd", 0o644)}, wantErr: "absolute"},
		{name: "symlink", hdrs: []*tar.Header{{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc"}}, wantErr: "not a directory or regular file"},
		{name: "hard link", hdrs: []*tar.Header{{Name: "link", Typeflag: tar.TypeLink, Linkname: "x"}}, wantErr: "not a directory or regular file"},
		{name: "device", hdrs: []*tar.Header{{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}, wantErr: "not a directory or regular file"},
		{name: "duplicate file", hdrs: []*tar.Header{reg("a", 0o644), reg("a", 0o644)}, wantErr: "image file a"},
		{name: "file under a file", hdrs: []*tar.Header{reg("a", 0o644), reg("a/b", 0o644)}, wantErr: "directory of a/b"},
		{name: "over the size limit", hdrs: []*tar.Header{{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2 << 20}}, wantErr: "past 1048576 bytes"},
		{name: "backslash", hdrs: []*tar.Header{reg(`a\b`, 0o644)}, wantErr: "backslash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			err := extractRootfs(bytes.NewReader(tarOf(t, tt.hdrs...)), root, 1<<20)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("extractRootfs() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("extractRootfs() error = %v", err)
			}
			for p, mode := range tt.want {
				fi, err := os.Lstat(filepath.Join(root, p))
				if err != nil {
					t.Errorf("%s: %v", p, err)
					continue
				}
				if got := fi.Mode() & (fs.ModeType | fs.ModePerm | fs.ModeSticky); got != mode {
					t.Errorf("%s mode = %v, want %v", p, got, mode)
				}
			}
		})
	}
}

func TestExtractRootfsTruncated(t *testing.T) {
	full := tarOf(t, &tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1000})
	if err := extractRootfs(bytes.NewReader(full[:700]), t.TempDir(), 1<<20); err == nil {
		t.Fatal("extractRootfs accepted a truncated tar")
	}
}

func FuzzExtractRootfs(f *testing.F) {
	f.Add(tarOf(f, &tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, &tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}))
	f.Add(tarOf(f, &tar.Header{Name: "../x", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}))
	f.Add(tarOf(f, &tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/"}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		if err := extractRootfs(bytes.NewReader(data), root, 64<<10); err != nil {
			return
		}
		// Whatever was accepted stays inside root and holds no links.
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type()&fs.ModeSymlink != 0 || d.Type()&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0 {
				t.Errorf("accepted special file %s (%v)", p, d.Type())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
