package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// rootfsEntry is one file or directory of the image's root filesystem.
type rootfsEntry struct {
	Path string      // slash-separated, relative to /, e.g. "etc/passwd"
	Mode fs.FileMode // permission bits plus fs.ModeDir / fs.ModeSticky
	Src  string      // host file to copy; empty for directories
}

// defaultPath is the PATH Docker puts into the config of an image whose
// Dockerfile sets none, mirrored so the check's config matches a real build.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// rootfsFiles lists the final image's filesystem as the Dockerfile's build
// stage assembles it under /rootfs: keep the two in step.
func rootfsFiles(binary, caBundle, passwd, group string) []rootfsEntry {
	return []rootfsEntry{
		{Path: "etc", Mode: fs.ModeDir | 0o755},
		{Path: "etc/group", Mode: 0o644, Src: group},
		{Path: "etc/passwd", Mode: 0o644, Src: passwd},
		{Path: "etc/ssl", Mode: fs.ModeDir | 0o755},
		{Path: "etc/ssl/certs", Mode: fs.ModeDir | 0o755},
		{Path: "etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Src: caBundle},
		{Path: "fashion", Mode: 0o755, Src: binary},
		{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}

// layerTar writes entries as one uncompressed layer tar. Every entry is owned
// by root with a fixed modification time, so the layer's digest depends only
// on the files' contents and modes.
func layerTar(entries []rootfsEntry) ([]byte, error) {
	sorted := append([]rootfsEntry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	for _, e := range sorted {
		if e.Path == "" || path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path || strings.HasPrefix(e.Path, "../") {
			return nil, fmt.Errorf("layer entry %q: path must be relative and clean", e.Path)
		}
		hdr := &tar.Header{
			Name:    e.Path,
			Mode:    int64(e.Mode.Perm()),
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		if e.Mode&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		var data []byte
		if e.Mode.IsDir() {
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		} else {
			b, err := os.ReadFile(e.Src)
			if err != nil {
				return nil, fmt.Errorf("layer entry %s: %w", e.Path, err)
			}
			data = b
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(b))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.Path, err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing layer tar: %w", err)
	}
	return buf.Bytes(), nil
}

// assembleImage builds the single-layer OCI image for entries with the
// configuration the Dockerfile's final stage declares.
func assembleImage(entries []rootfsEntry, d *dockerImage) (v1.Image, error) {
	raw, err := layerTar(entries)
	if err != nil {
		return nil, err
	}
	// gzip's default level, as "docker push" compresses layers
	// (go-containerregistry's own default is BestSpeed, about 14% larger
	// here), so the size reported is the size a registry stores.
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.DefaultCompression))
	if err != nil {
		return nil, fmt.Errorf("compressing layer: %w", err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, fmt.Errorf("adding layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading base config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = imageConfig(d)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("setting image config: %w", err)
	}
	return img, nil
}

// imageConfig translates the Dockerfile's final stage into an OCI runtime
// config.
func imageConfig(d *dockerImage) v1.Config {
	env := d.Env
	hasPath := false
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			hasPath = true
		}
	}
	if !hasPath {
		env = append([]string{defaultPath}, env...)
	}
	ports := map[string]struct{}{}
	for _, p := range d.ExposedPorts {
		ports[p] = struct{}{}
	}
	return v1.Config{
		User:         d.User,
		ExposedPorts: ports,
		Env:          env,
		Entrypoint:   d.Entrypoint,
		Cmd:          d.Cmd,
		WorkingDir:   d.WorkingDir,
		Labels:       d.Labels,
	}
}

// imageSize is the compressed size of an image as a registry stores it: its
// manifest, its config and its compressed layers.
type imageSize struct {
	Manifest, Config int64
	Layers           []int64
}

// Total is the sum of all parts.
func (s imageSize) Total() int64 {
	t := s.Manifest + s.Config
	for _, l := range s.Layers {
		t += l
	}
	return t
}

// measure returns img's compressed size.
func measure(img v1.Image) (imageSize, error) {
	var s imageSize
	m, err := img.RawManifest()
	if err != nil {
		return s, fmt.Errorf("reading manifest: %w", err)
	}
	s.Manifest = int64(len(m))
	c, err := img.RawConfigFile()
	if err != nil {
		return s, fmt.Errorf("reading config: %w", err)
	}
	s.Config = int64(len(c))
	layers, err := img.Layers()
	if err != nil {
		return s, fmt.Errorf("listing layers: %w", err)
	}
	for i, l := range layers {
		n, err := l.Size()
		if err != nil {
			return s, fmt.Errorf("sizing layer %d: %w", i, err)
		}
		s.Layers = append(s.Layers, n)
	}
	return s, nil
}
