package idx

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// Official SHA-256 sums of the decompressed dataset files. Checking the
// decompressed content makes the sums independent of how (or whether) a
// mirror compressed the files.
const (
	TrainImagesSHA256 = "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
	TrainLabelsSHA256 = "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
	TestImagesSHA256  = "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
	TestLabelsSHA256  = "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
)

// File names one dataset file and the SHA-256 (lower-case hex) of its
// decompressed content.
type File struct {
	Name   string
	SHA256 string
}

// OfficialFiles returns the four official Fashion-MNIST files with their
// checksums, in the order of Names.
func OfficialFiles() []File {
	return []File{
		{TrainImagesName, TrainImagesSHA256},
		{TrainLabelsName, TrainLabelsSHA256},
		{TestImagesName, TestImagesSHA256},
		{TestLabelsName, TestLabelsSHA256},
	}
}

// Status is the outcome of verifying one file.
type Status int

// The possible outcomes of verifying a file.
const (
	// StatusOK means the file is present and its checksum matches.
	StatusOK Status = iota
	// StatusMissing means neither the raw nor the ".gz" file exists.
	StatusMissing
	// StatusMismatch means the file was read but its checksum differs.
	StatusMismatch
	// StatusError means the file exists but could not be read, for
	// example because its gzip data is corrupt.
	StatusError
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusMissing:
		return "missing"
	case StatusMismatch:
		return "mismatch"
	case StatusError:
		return "error"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// FileStatus is the result of verifying one dataset file.
type FileStatus struct {
	// Name is the standard name of the file, without ".gz".
	Name string
	// Path is the file that was checked; empty if it is missing.
	Path   string
	Status Status
	// Want and Got are the expected and the computed SHA-256 of the
	// decompressed content; Got is empty unless the file was read.
	Want, Got string
	// Stored is the SHA-256 of the file as stored (compressed if it is a
	// ".gz"), what sha256sum prints for Path; empty unless it was read.
	Stored string
	// Err says what went wrong when Status is StatusError.
	Err error
}

// Verify checks the SHA-256 of the decompressed content of each of the
// four dataset files in dir against the official sums. It checks the copy
// Load reads (see Locate) when both a raw and a ".gz" copy exist. It returns the
// status of every file and, if any is not StatusOK, an error summarising
// which, so callers can both show the details and fail.
func Verify(dir string) ([]FileStatus, error) {
	return verifyFiles(dir, OfficialFiles())
}

func verifyFiles(dir string, files []File) ([]FileStatus, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("verifying data directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("verifying data directory: %s is not a directory", dir)
	}
	statuses := make([]FileStatus, 0, len(files))
	var bad []string
	for _, f := range files {
		st := verifyFile(dir, f)
		statuses = append(statuses, st)
		if st.Status != StatusOK {
			bad = append(bad, f.Name+": "+st.Status.String())
		}
	}
	if len(bad) > 0 {
		return statuses, fmt.Errorf("%d of %d files in %s failed verification (%s)", len(bad), len(files), dir, strings.Join(bad, "; "))
	}
	return statuses, nil
}

func verifyFile(dir string, f File) FileStatus {
	st := FileStatus{Name: f.Name, Want: f.SHA256}
	path, err := Locate(dir, f.Name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			st.Status = StatusMissing
		} else {
			st.Status, st.Err = StatusError, err
		}
		return st
	}
	st.Path = path
	stored, sum, err := fileSHA256(path)
	if err != nil {
		st.Status, st.Err = StatusError, err
		return st
	}
	st.Stored, st.Got = stored, sum
	if sum == f.SHA256 {
		st.Status = StatusOK
	} else {
		st.Status = StatusMismatch
	}
	return st
}

// fileSHA256 returns, in one read, the SHA-256 of the file as stored and
// of its content, decompressed first if it starts with the gzip magic
// bytes.
func fileSHA256(path string) (stored, content string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	raw := sha256.New()
	r := io.TeeReader(f, raw)
	content, err = contentSHA256(r)
	if err == nil {
		_, err = io.Copy(io.Discard, r) // bytes after the gzip stream
	}
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(raw.Sum(nil)), content, nil
}

// contentSHA256 hashes the decompressed content of r (gzip is detected
// from its magic bytes).
func contentSHA256(r io.Reader) (string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return "", gzipError("reading gzip header", err)
		}
		defer zr.Close()
		src = zr
	}
	h := sha256.New()
	if _, err := io.Copy(h, src); err != nil {
		if src != br {
			return "", gzipError("decompressing", err)
		}
		return "", fmt.Errorf("reading: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
