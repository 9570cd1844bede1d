// Package datatest finds the data tests need, the way the README says:
// Fashion-MNIST through the CLI's lookup (-data is not available to
// tests, so $FASHION_DATA, ./data/fashion-mnist at the module root, then
// /usr/share/datasets/fashion-mnist), and the shared material (reference
// models, clothing photos, protocol files) in the "shared" directory beside
// the repository. A test whose data is missing is skipped with a message
// saying what to provide, except under CI (CI set), where it fails: CI
// always has the data, so a skip there would hide a broken lookup.
package datatest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/fashion-classifier/fashion/internal/idx"
)

// ModuleRoot returns the directory holding go.mod, found from the working
// directory (a test runs in its package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// missing skips the test, or fails it under CI.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("CI must provide this: %s", msg)
	}
	t.Skip("skipping: " + msg)
}

// FashionMNISTDir returns the Fashion-MNIST directory by the README's
// lookup, with a relative FASHION_DATA or ./data/fashion-mnist taken from
// the module root; it skips (fails under CI) when there is none.
func FashionMNISTDir(t testing.TB) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		v := os.Getenv(k)
		if k == idx.EnvVar && v != "" && !filepath.IsAbs(v) {
			v = filepath.Join(root, v)
		}
		return v
	}
	local := filepath.Join(root, idx.LocalDir)
	if _, err := os.Stat(local); err == nil && os.Getenv(idx.EnvVar) == "" {
		return local
	}
	dir, err := idx.FindDir("", getenv)
	if err != nil {
		missing(t, "no Fashion-MNIST data (set FASHION_DATA, or see the README's data lookup): %v", err)
	}
	return dir
}

// FashionMNISTTest loads the official test set found by FashionMNISTDir.
func FashionMNISTTest(t testing.TB) idx.Set {
	t.Helper()
	s, err := idx.LoadTest(FashionMNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// SharedPath returns rel (e.g. "models/vgg_w32_fmnist.onnx") inside the
// "shared" directory beside the repository's root, skipping the test (or
// failing it under CI) when it is not there.
func SharedPath(t testing.TB, rel string) string {
	t.Helper()
	p, ok := LookupShared(rel)
	if !ok {
		missing(t, "%s not found (the shared directory beside the repository holds it)", p)
	}
	return p
}

// LookupShared is SharedPath without a test: the path, and whether it
// exists.
func LookupShared(rel string) (string, bool) {
	root, err := ModuleRoot()
	if err != nil {
		return rel, false
	}
	p := filepath.Join(filepath.Dir(root), "shared", filepath.FromSlash(rel))
	_, err = os.Stat(p)
	return p, err == nil
}
