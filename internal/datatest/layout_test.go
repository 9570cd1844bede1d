package datatest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeLayoutMatchesTree keeps the README's layout table and the tree
// in step: every top-level directory and every directory under cmd/,
// internal/ and tools/ has a row, and every path a row names exists.
func TestReadmeLayoutMatchesTree(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n## Layout")
	if start < 0 {
		t.Fatal("README.md has no ## Layout section")
	}
	section := text[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	listed := map[string]bool{}
	code := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			continue
		}
		for _, m := range code.FindAllStringSubmatch(cells[1], -1) {
			p := strings.TrimSuffix(m[1], "/")
			listed[p] = true
			if _, err := os.Stat(filepath.Join(root, p)); err != nil {
				t.Errorf("README layout names %s, which does not exist", m[1])
			}
		}
	}
	var want []string
	top, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range top {
		name := e.Name()
		if !e.IsDir() || name == ".git" || name == "data" || (strings.HasPrefix(name, ".") && name != ".ci") {
			continue
		}
		switch name {
		case "cmd", "internal", "tools":
			sub, err := os.ReadDir(filepath.Join(root, name))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range sub {
				if s.IsDir() {
					want = append(want, name+"/"+s.Name())
				}
			}
		default:
			want = append(want, name)
		}
	}
	for _, d := range want {
		if !listed[d] {
			t.Errorf("README layout table has no row for %s/", d)
		}
	}
}
