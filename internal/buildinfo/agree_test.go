package buildinfo

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestDocsAgreeWithRelease keeps the version tags in the docs, manifests
// and Dockerfile equal to Release, so the version a user reads is the one
// "fashion version", /openapi.json and deploy/image-check's tarball report.
func TestDocsAgreeWithRelease(t *testing.T) {
	root := filepath.Join("..", "..")
	files := []string{"README.md", "Dockerfile", "deploy/README.md"}
	for _, glob := range []string{"docs/*.md", "deploy/k8s/*.yaml"} {
		m, err := filepath.Glob(filepath.Join(root, glob))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			rel, _ := filepath.Rel(root, f)
			files = append(files, rel)
		}
	}
	tag := regexp.MustCompile(`fashion-classifier:v?([0-9]+\.[0-9]+\.[0-9]+[0-9A-Za-z.+-]*)`)
	arg := regexp.MustCompile(`(?m)^ARG VERSION=(\S*)`)
	found := 0
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, re := range []*regexp.Regexp{tag, arg} {
			for _, m := range re.FindAllSubmatch(b, -1) {
				found++
				if string(m[1]) != Release {
					t.Errorf("%s: %q names version %q, but internal/buildinfo.Release is %q", f, m[0], m[1], Release)
				}
			}
		}
	}
	if found < 5 {
		t.Errorf("found only %d version mentions; the pattern no longer matches the docs", found)
	}
}
