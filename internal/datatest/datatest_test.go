package datatest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "datatest", "datatest.go")); err != nil {
		t.Errorf("ModuleRoot() = %s, which does not hold this package: %v", root, err)
	}
	if p, ok := LookupShared("no/such/file"); ok || filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(p)))) != "shared" {
		t.Errorf("LookupShared(no/such/file) = %s, %v; want a missing path under ../shared", p, ok)
	}
}

// TestRelativeFASHION_DATA: a relative FASHION_DATA is taken from the
// module root (where .ci/run and the README's commands run), not from the
// package directory the test runs in.
func TestRelativeFASHION_DATA(t *testing.T) {
	dir := FashionMNISTDir(t) // skips (fails under CI) without data
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		t.Skipf("data directory %s has no path relative to %s", dir, root)
	}
	t.Setenv("FASHION_DATA", rel)
	if got := FashionMNISTDir(t); filepath.Clean(got) != filepath.Clean(dir) {
		t.Errorf("FASHION_DATA=%s found %s, want %s", rel, got, dir)
	}
}
