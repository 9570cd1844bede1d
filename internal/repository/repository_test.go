package repository

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// fake is a loaded version that records whether it was closed.
type fake struct {
	spec   Spec
	closed atomic.Bool
}

func (f *fake) Close() {
	if f.closed.Swap(true) {
		panic("closed twice")
	}
}

// writeVersion creates DIR/name/v/file with some content.
func writeVersion(t *testing.T, dir, name, v, file, content string) {
	t.Helper()
	p := filepath.Join(dir, name, v)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newFakeRepo(t *testing.T, dir string) (*Repository[*fake], *sync.Map) {
	t.Helper()
	var loads sync.Map // path → *fake
	load := func(ctx context.Context, s Spec) (*fake, error) {
		data, err := os.ReadFile(s.Path)
		if err != nil {
			return nil, err
		}
		if string(data) == "bad" {
			return nil, errors.New("corrupt model file")
		}
		f := &fake{spec: s}
		loads.Store(s.Path, f)
		return f, nil
	}
	r := New(dir, load, nil)
	t.Cleanup(r.Close)
	return r, &loads
}

func TestScanIndexAcquire(t *testing.T) {
	dir := t.TempDir()
	writeVersion(t, dir, "a", "1", "model.safetensors", "a1")
	writeVersion(t, dir, "a", "2", "model.safetensors", "a2")
	writeVersion(t, dir, "b", "3", "model.onnx", "b3")
	writeVersion(t, dir, "c", "1", "model.onnx", "bad")
	writeVersion(t, dir, "d", "1", "README", "no model here")
	if err := os.WriteFile(filepath.Join(dir, "b", "config.json"), []byte(`{"version_policy":{"all":{}},"classes":["x","y"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _ := newFakeRepo(t, dir)
	err := r.Scan(context.Background())
	if err == nil {
		t.Fatal("Scan with a corrupt model and an empty version returned no error")
	}
	idx := r.Index(false)
	want := []IndexEntry{
		{Name: "a", Version: "2", State: StateReady}, // default policy: latest 1
		{Name: "b", Version: "3", State: StateReady},
		{Name: "c", Version: "1", State: StateUnavailable, Reason: "corrupt model file"},
		{Name: "d", Version: "1", State: StateUnavailable, Reason: "version 1 has none of [model.safetensors model.onnx]"},
	}
	if len(idx) != len(want) {
		t.Fatalf("index = %+v, want %+v", idx, want)
	}
	for i := range want {
		if idx[i] != want[i] {
			t.Errorf("index[%d] = %+v, want %+v", i, idx[i], want[i])
		}
	}
	if got := r.Index(true); len(got) != 2 {
		t.Errorf("ready index = %+v, want a/2 and b/3", got)
	}

	ref, err := r.Acquire("b", "")
	if err != nil {
		t.Fatal(err)
	}
	if ref.Version() != "3" || len(ref.Model().spec.Config.Classes) != 2 {
		t.Errorf("b: version %s config %+v", ref.Version(), ref.Model().spec.Config)
	}
	ref.Release()
	ref.Release() // a second release is a no-op
	for _, tc := range []struct {
		name, ver string
		want      error
	}{
		{"zzz", "", ErrNotFound},
		{"a", "1", ErrNotFound}, // not chosen by the policy
		{"a", "x", ErrNotFound},
		{"a", "0", ErrNotFound},
		{"c", "", ErrUnavailable},
		{"c", "1", ErrUnavailable},
	} {
		if _, err := r.Acquire(tc.name, tc.ver); !errors.Is(err, tc.want) {
			t.Errorf("Acquire(%q, %q) = %v, want %v", tc.name, tc.ver, err, tc.want)
		}
	}
}

func TestSwapKeepsAcquiredVersionOpen(t *testing.T) {
	dir := t.TempDir()
	writeVersion(t, dir, "m", "1", "model.safetensors", "v1")
	r, _ := newFakeRepo(t, dir)
	if err := r.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	old, err := r.Acquire("m", "")
	if err != nil {
		t.Fatal(err)
	}
	writeVersion(t, dir, "m", "2", "model.safetensors", "v2")
	if err := r.Load(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	cur, err := r.Acquire("m", "")
	if err != nil {
		t.Fatal(err)
	}
	if cur.Version() != "2" || old.Version() != "1" {
		t.Fatalf("versions: current %s, held %s", cur.Version(), old.Version())
	}
	if old.Model().closed.Load() {
		t.Fatal("version 1 closed while a request still holds it")
	}
	if got := r.Versions("m"); len(got) != 1 || got[0] != "2" {
		t.Errorf("Versions = %v, want [2]", got)
	}
	old.Release()
	if !old.Model().closed.Load() {
		t.Error("version 1 not closed after its last reference was released")
	}

	// Unload: the held reference stays usable until released.
	if err := r.Unload("m"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Acquire("m", ""); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Acquire after unload = %v, want ErrUnavailable", err)
	}
	if cur.Model().closed.Load() {
		t.Error("unloaded version closed while still referenced")
	}
	cur.Release()
	if !cur.Model().closed.Load() {
		t.Error("unloaded version not closed after release")
	}
	// Scan leaves an unloaded model alone; Load brings it back.
	if err := r.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.Ready("m") {
		t.Error("Scan reloaded an explicitly unloaded model")
	}
	if err := r.Load(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	if !r.Ready("m") {
		t.Error("Load did not bring the model back")
	}
}

func TestFailedReloadKeepsOldCopy(t *testing.T) {
	dir := t.TempDir()
	writeVersion(t, dir, "m", "1", "model.safetensors", "v1")
	r, loads := newFakeRepo(t, dir)
	if err := r.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	// An unchanged file is not loaded again.
	if err := r.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := 0
	loads.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("%d loads after two scans of one unchanged version, want 1", n)
	}
	writeVersion(t, dir, "m", "1", "model.safetensors", "bad")
	if err := r.Load(context.Background(), "m"); err == nil {
		t.Fatal("loading a corrupt file gave no error")
	}
	ref, err := r.Acquire("m", "1")
	if err != nil {
		t.Fatalf("old copy no longer served after a failed reload: %v", err)
	}
	ref.Release()
	// A model whose directory disappears is dropped by Scan.
	if err := os.RemoveAll(filepath.Join(dir, "m")); err != nil {
		t.Fatal(err)
	}
	if err := r.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Acquire("m", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("after the directory went: %v, want ErrNotFound", err)
	}
}

func TestVersionPolicy(t *testing.T) {
	present := []int64{1, 2, 5, 7}
	one := func(n int) *VersionPolicy {
		p := &VersionPolicy{}
		p.Latest = &struct {
			NumVersions int `json:"num_versions"`
		}{n}
		return p
	}
	spec := &VersionPolicy{Specific: &struct {
		Versions []int64 `json:"versions"`
	}{[]int64{2, 3, 7}}}
	for _, tc := range []struct {
		name string
		p    *VersionPolicy
		want []int64
	}{
		{"default", nil, []int64{7}},
		{"latest 2", one(2), []int64{5, 7}},
		{"latest 9", one(9), present},
		{"all", &VersionPolicy{All: &struct{}{}}, present},
		{"specific", spec, []int64{2, 7}},
	} {
		got := tc.p.choose(present)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
	}
}

func TestReadConfigRefusesBadInput(t *testing.T) {
	for _, tc := range []struct{ name, json string }{
		{"unknown field", `{"mena": 0.5}`},
		{"two policies", `{"version_policy":{"all":{},"latest":{"num_versions":1}}}`},
		{"no policy", `{"version_policy":{}}`},
		{"latest 0", `{"version_policy":{"latest":{"num_versions":0}}}`},
		{"empty specific", `{"version_policy":{"specific":{"versions":[]}}}`},
		{"std 0", `{"std": 0}`},
		{"trailing", `{} {}`},
	} {
		p := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(p, []byte(tc.json), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readConfig(p); err == nil {
			t.Errorf("%s: %s accepted", tc.name, tc.json)
		}
	}
	big := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(big, make([]byte, maxConfigBytes+10), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readConfig(big); err == nil {
		t.Error("oversized config accepted")
	}
}
