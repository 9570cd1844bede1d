package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestAssembleRoundTrip assembles an image from small stand-in files, writes
// it as a tarball, reads it back and extracts it, checking the config, the
// file contents and modes, and that assembly is reproducible.
func TestAssembleRoundTrip(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{"bin": "#!binary", "ca": "CERTS", "passwd": "nonroot:x:65532:65532::/:/sbin/nologin\n", "group": "nonroot:x:65532:\n"}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(src, n), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	entries := rootfsFiles(filepath.Join(src, "bin"), filepath.Join(src, "ca"), filepath.Join(src, "passwd"), filepath.Join(src, "group"))
	spec := &dockerImage{
		User: "65532:65532", Uid: 65532, Gid: 65532,
		ExposedPorts: []string{"8080/tcp"},
		Env:          []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		Labels:       map[string]string{"org.opencontainers.image.version": "1.0.0"},
		Entrypoint:   []string{"/fashion", "serve"},
	}
	img, err := assembleImage(entries, spec)
	if err != nil {
		t.Fatal(err)
	}
	again, err := assembleImage(entries, spec)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("assembling twice gave digests %s and %s, want identical", d1, d2)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, want OCI", mt)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || !reflect.DeepEqual(c.Entrypoint, []string{"/fashion", "serve"}) {
		t.Errorf("config user %q entrypoint %q", c.User, c.Entrypoint)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v, want only 8080/tcp", c.ExposedPorts)
	}
	if !reflect.DeepEqual(c.Env, []string{defaultPath, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}) {
		t.Errorf("env %q", c.Env)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	size, err := measure(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(size.Layers) != 1 || size.Layers[0] <= 0 || size.Total() <= size.Layers[0] {
		t.Errorf("size %+v: want one non-empty layer plus manifest and config", size)
	}

	tarPath := filepath.Join(t.TempDir(), "image.tar")
	tag, err := name.NewTag("fashion-classifier:" + tagSafe("1.0.0+dirty"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(tarPath, tag, img); err != nil {
		t.Fatal(err)
	}
	loaded, err := tarball.ImageFromPath(tarPath, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameContent(img, loaded); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	rc := mutate.Extract(loaded)
	defer rc.Close()
	if err := extractRootfs(rc, root, maxRootfsSize); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		content string
		mode    fs.FileMode
	}{
		"fashion":                           {files["bin"], 0o755},
		"etc/ssl/certs/ca-certificates.crt": {files["ca"], 0o644},
		"etc/passwd":                        {files["passwd"], 0o644},
		"etc/group":                         {files["group"], 0o644},
		"tmp":                               {"", fs.ModeDir | fs.ModeSticky | 0o777},
	}
	for p, w := range want {
		full := filepath.Join(root, p)
		fi, err := os.Stat(full)
		if err != nil {
			t.Errorf("%s missing: %v", p, err)
			continue
		}
		if got := fi.Mode() & (fs.ModeDir | fs.ModePerm | fs.ModeSticky); got != w.mode {
			t.Errorf("%s mode %v, want %v", p, got, w.mode)
		}
		if !fi.IsDir() {
			b, _ := os.ReadFile(full)
			if !bytes.Equal(b, []byte(w.content)) {
				t.Errorf("%s content %q, want %q", p, b, w.content)
			}
		}
	}
}

func TestLayerTarRejectsBadPaths(t *testing.T) {
	for _, p := range []string{"", "/abs", "a/../b", "../x"} {
		if _, err := layerTar([]rootfsEntry{{Path: p, Mode: fs.ModeDir | 0o755}}); err == nil {
			t.Errorf("layerTar accepted path %q", p)
		}
	}
}

func TestTagSafe(t *testing.T) {
	tests := []struct{ in, want string }{
		{"1.0.0", "1.0.0"},
		{"v1.2.3-4-gabc-dirty", "v1.2.3-4-gabc-dirty"},
		{"1.0.0+meta", "1.0.0-meta"},
		{"-x", "v-x"},
		{"", "v"},
	}
	for _, tt := range tests {
		got := tagSafe(tt.in)
		if got != tt.want {
			t.Errorf("tagSafe(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if _, err := name.NewTag("fashion-classifier:" + got); err != nil {
			t.Errorf("tagSafe(%q) = %q is not a valid tag: %v", tt.in, got, err)
		}
	}
}

func TestCountCerts(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.crt")
	junk := filepath.Join(dir, "junk.crt")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(junk, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{empty, junk, filepath.Join(dir, "missing.crt")} {
		if n, err := countCerts(p); err == nil {
			t.Errorf("countCerts(%s) = %d, nil; want an error", filepath.Base(p), n)
		}
	}
	// The build machine's bundle is what the image ships; where it exists
	// it must parse.
	const host = "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(host); err != nil {
		t.Skipf("no CA bundle at %s on this machine", host)
	}
	if n, err := countCerts(host); err != nil || n < 10 {
		t.Errorf("countCerts(%s) = %d, %v; want many certificates", host, n, err)
	}
}
