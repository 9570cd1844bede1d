package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/fashion-classifier/fashion/internal/idx"
)

func TestDataVerify(t *testing.T) {
	dir := datatest.FashionMNISTDir(t)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"data", "verify", "-data", dir}, &out, &errb); code != 0 {
		t.Fatalf("verify of the real data exited %d: %s%s", code, out.String(), errb.String())
	}
	// Each file's line shows what sha256sum prints for it, as stored.
	for _, name := range idx.Names() {
		path, err := idx.Locate(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%x", sha256.Sum256(b))
		if !strings.Contains(out.String(), path+" ") || !regexp.MustCompile(regexp.QuoteMeta(path)+` +OK +`+want+`\n`).MatchString(out.String()) {
			t.Errorf("verify output has no line \"%s  OK  %s\" (sha256sum of the file):\n%s", path, want, out.String())
		}
	}
	// A copy with one damaged file fails, naming it.
	bad := t.TempDir()
	for _, name := range idx.Names() {
		src, err := idx.Locate(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(name, "t10k-labels") {
			data = data[:len(data)/2]
		}
		os.WriteFile(filepath.Join(bad, filepath.Base(src)), data, 0o644)
	}
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"data", "verify", "-data", bad}, &out, &errb); code == 0 {
		t.Fatal("verify passed a truncated label file")
	}
	if !strings.Contains(out.String()+errb.String(), "t10k-labels") {
		t.Errorf("output does not name the damaged file:\n%s%s", out.String(), errb.String())
	}
	if strings.Contains(errb.String(), "idx:") {
		t.Errorf("error shows a package prefix to the user: %s", errb.String())
	}
}

func TestDataFetchFromUnreachableMirrorFailsCleanly(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"data", "fetch", "-dir", dir, "-url", srv.URL + "/", "-retries", "0"}, &out, &errb)
	if code == 0 {
		t.Fatal("fetch from a mirror that has no files succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("fetch left %d files behind", len(entries))
	}
}

func TestDataErrorsHaveNoPackagePrefix(t *testing.T) {
	for _, args := range [][]string{
		{"data", "verify", "-data", filepath.Join(t.TempDir(), "missing")},
		{"data", "verify", "-data", t.TempDir()},
		{"data", "fetch", "-dir", t.TempDir(), "-url", "ftp://example.invalid/"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code == 0 {
			t.Errorf("%v exited 0", args)
		}
		if msg := errb.String(); !strings.HasPrefix(msg, "fashion data: ") || strings.Contains(msg, "idx:") {
			t.Errorf("%v: error %q, want \"fashion data: …\" without a package prefix", args, msg)
		}
	}
}

func TestDataUsage(t *testing.T) {
	if code := run(context.Background(), []string{"data"}, &bytes.Buffer{}, &bytes.Buffer{}); code == 0 {
		t.Error("`fashion data` without a subcommand exited 0")
	}
	if code := run(context.Background(), []string{"data", "nope"}, &bytes.Buffer{}, &bytes.Buffer{}); code == 0 {
		t.Error("unknown subcommand exited 0")
	}
}
