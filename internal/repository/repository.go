// Package repository serves models from a directory in Triton's model
// repository layout, DIR/NAME/VERSION/model.safetensors (or model.onnx) with
// an optional DIR/NAME/config.json, and implements what Triton's repository
// extension needs: an index of models and versions with their state,
// loading and unloading by name, and re-scanning the directory.
//
// Loading is an atomic swap. A request takes a reference to the version it
// runs on (Acquire) and drops it when done (Ref.Release); a new version is
// loaded and prepared (the LoadFunc warms it up) before it is published, and
// a version that is replaced or unloaded is closed only when its last
// reference is released, so requests already admitted finish on the version
// they started with and none fails because of the swap.
package repository

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Closer is what the repository keeps per loaded version: the caller's
// prepared model, closed when the version's last reference is released.
type Closer interface{ Close() }

// Spec says which model file a LoadFunc must load.
type Spec struct {
	Name    string
	Version int64
	// Path is the version's model file, DIR/NAME/VERSION/model.safetensors
	// or model.onnx.
	Path string
	// Config is the model's config.json (zero if it has none).
	Config ModelConfig
}

// LoadFunc opens and prepares one version of a model, e.g. opens the file
// with Open, starts a batcher and warms it up. It must honour ctx.
type LoadFunc[M Closer] func(ctx context.Context, s Spec) (M, error)

// States of a model version in the index, as Triton names them.
const (
	StateReady       = "READY"
	StateUnavailable = "UNAVAILABLE"
	StateLoading     = "LOADING"
)

// Errors Acquire, Load and Unload wrap; servers map ErrNotFound to 404 and
// ErrUnavailable to 400, as Triton does.
var (
	// ErrNotFound means the repository has no model (or version) of that name.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable means the model exists but has no ready version:
	// unloaded, still loading or failed to load.
	ErrUnavailable = errors.New("unavailable")
)

// modelFiles are the file names a version directory may hold, one of them.
var modelFiles = []string{"model.safetensors", "model.onnx"}

// IndexEntry is one row of the repository index (Triton's
// POST /v2/repository/index): a model version, or a model without a usable
// version, with its state and, unless ready, the reason.
type IndexEntry struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
}

// Repository holds the loaded models. Its methods are safe for concurrent
// use.
type Repository[M Closer] struct {
	dir  string
	load LoadFunc[M]
	log  *slog.Logger

	// ops serialises Load, Unload and Scan, so that two loads of one model
	// never race; Acquire never takes it.
	ops sync.Mutex
	// mu guards models and every model's fields.
	mu     sync.RWMutex
	models map[string]*model[M]
}

// model is one name's state.
type model[M Closer] struct {
	static   bool // added with AddStatic, not from the directory
	versions map[int64]*version[M]
	loading  []int64
	failed   map[int64]string // version → why it did not load
	// reason says why the model has no ready version, when it has none.
	reason   string
	unloaded bool // explicitly unloaded: Scan leaves it alone
}

// version is one loaded version with its reference count. The repository
// holds one reference while the version is published; every Acquire adds
// one.
type version[M Closer] struct {
	n      int64
	stamp  string // the model file's path, size and modification time
	m      M
	refs   atomic.Int64
	closed sync.Once
}

func (v *version[M]) drop() {
	if v.refs.Add(-1) == 0 {
		v.close()
	}
}

func (v *version[M]) close() { v.closed.Do(v.m.Close) }

// Ref is a reference to a loaded version, taken by Acquire. The version
// stays open until every reference is released.
type Ref[M Closer] struct {
	name     string
	v        *version[M]
	released atomic.Bool
}

// Model returns the referenced version's prepared model.
func (r *Ref[M]) Model() M { return r.v.m }

// Name returns the model's name.
func (r *Ref[M]) Name() string { return r.name }

// Version returns the version number as the protocol spells it.
func (r *Ref[M]) Version() string { return strconv.FormatInt(r.v.n, 10) }

// Release drops the reference; a second call does nothing.
func (r *Ref[M]) Release() {
	if r.released.CompareAndSwap(false, true) {
		r.v.drop()
	}
}

// New returns a repository over dir (empty: no directory, only models added
// with AddStatic) that loads versions with load. Call Scan to load the
// directory's models.
func New[M Closer](dir string, load LoadFunc[M], log *slog.Logger) *Repository[M] {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Repository[M]{dir: dir, load: load, log: log, models: make(map[string]*model[M])}
}

// AddStatic publishes m as version v of name, for a model that does not come
// from the directory (the embedded default model). A directory model of the
// same name is then ignored by Scan. Static models cannot be unloaded.
func (r *Repository[M]) AddStatic(name string, v int64, m M) {
	ver := &version[M]{n: v, stamp: "static", m: m}
	ver.refs.Store(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.models[name]; old != nil {
		for _, o := range old.versions {
			o.drop()
		}
	}
	r.models[name] = &model[M]{static: true, versions: map[int64]*version[M]{v: ver}}
}

// Acquire returns a reference to version (a decimal number, or "" for the
// highest ready one) of model name. The caller must Release it.
func (r *Repository[M]) Acquire(name, ver string) (*Ref[M], error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m := r.models[name]
	if m == nil {
		return nil, fmt.Errorf("model %q is not served here: %w in the repository", name, ErrNotFound)
	}
	var v *version[M]
	if ver == "" {
		for _, c := range m.versions {
			if v == nil || c.n > v.n {
				v = c
			}
		}
		if v == nil {
			return nil, fmt.Errorf("model %q is %w: %s", name, ErrUnavailable, m.why())
		}
	} else {
		n, err := strconv.ParseInt(ver, 10, 64)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("model %q has no version %q: %w (versions are positive integers)", name, ver, ErrNotFound)
		}
		if v = m.versions[n]; v == nil {
			if len(m.versions) == 0 {
				return nil, fmt.Errorf("model %q is %w: %s", name, ErrUnavailable, m.why())
			}
			return nil, fmt.Errorf("model %q has no version %d: %w; ready versions: %v", name, n, ErrNotFound, m.ready())
		}
	}
	// v is published, so the repository's own reference keeps refs ≥ 1
	// while mu is held: incrementing cannot revive a closed version.
	v.refs.Add(1)
	return &Ref[M]{name: name, v: v}, nil
}

// why says why a model has no ready version.
func (m *model[M]) why() string {
	switch {
	case len(m.loading) > 0:
		return "loading"
	case m.reason != "":
		return m.reason
	}
	return "no ready version"
}

// ready lists the ready versions, ascending.
func (m *model[M]) ready() []int64 {
	vs := make([]int64, 0, len(m.versions))
	for n := range m.versions {
		vs = append(vs, n)
	}
	slices.Sort(vs)
	return vs
}

// Each calls f with the model of every published version. It holds a read
// lock: f must be quick and must not call the repository.
func (r *Repository[M]) Each(f func(M)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, m := range r.models {
		for _, v := range m.versions {
			f(v.m)
		}
	}
}

// Versions returns the ready versions of name, ascending, as strings.
func (r *Repository[M]) Versions(name string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m := r.models[name]
	if m == nil {
		return nil
	}
	var out []string
	for _, n := range m.ready() {
		out = append(out, strconv.FormatInt(n, 10))
	}
	return out
}

// Ready reports whether name has a ready version.
func (r *Repository[M]) Ready(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m := r.models[name]
	return m != nil && len(m.versions) > 0
}

// Names returns the names of the models with a ready version, sorted.
func (r *Repository[M]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for name, m := range r.models {
		if len(m.versions) > 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Index lists every model the repository knows with its versions' states,
// sorted by name and version. readyOnly keeps only ready versions.
func (r *Repository[M]) Index(readyOnly bool) []IndexEntry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.models))
	for name := range r.models {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []IndexEntry
	for _, name := range names {
		m := r.models[name]
		rows := 0
		vs := map[int64]IndexEntry{}
		for n := range m.versions {
			vs[n] = IndexEntry{State: StateReady}
		}
		if !readyOnly {
			for n, why := range m.failed {
				if _, ok := vs[n]; !ok {
					vs[n] = IndexEntry{State: StateUnavailable, Reason: why}
				}
			}
			for _, n := range m.loading {
				vs[n] = IndexEntry{State: StateLoading}
			}
		}
		keys := make([]int64, 0, len(vs))
		for n := range vs {
			keys = append(keys, n)
		}
		slices.Sort(keys)
		for _, n := range keys {
			e := vs[n]
			e.Name, e.Version = name, strconv.FormatInt(n, 10)
			out = append(out, e)
			rows++
		}
		if rows == 0 && !readyOnly {
			out = append(out, IndexEntry{Name: name, State: StateUnavailable, Reason: m.why()})
		}
	}
	return out
}

// validName reports whether name can be a model directory and URL segment.
func validName(name string) bool {
	if name == "" || len(name) > 128 || name[0] == '.' {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Scan reads the directory: it loads models that are new or whose version
// files changed (unless explicitly unloaded), and drops models whose
// directory is gone. It returns the errors met, joined; models that loaded
// are served whatever the others did.
func (r *Repository[M]) Scan(ctx context.Context) error {
	if r.dir == "" {
		return nil
	}
	r.ops.Lock()
	defer r.ops.Unlock()
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return fmt.Errorf("reading model repository: %w", err)
	}
	onDisk := map[string]bool{}
	var errs []error
	for _, e := range ents {
		if !e.IsDir() || !validName(e.Name()) {
			continue
		}
		name := e.Name()
		onDisk[name] = true
		r.mu.RLock()
		m := r.models[name]
		skip := m != nil && (m.static || m.unloaded)
		r.mu.RUnlock()
		if skip {
			continue
		}
		if err := r.loadLocked(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	r.mu.Lock()
	for name, m := range r.models {
		if !m.static && !onDisk[name] {
			for _, v := range m.versions {
				v.drop()
			}
			delete(r.models, name)
			r.log.Info("model removed from the repository", "model", name)
		}
	}
	r.mu.Unlock()
	return errors.Join(errs...)
}

// Load (re)loads model name from the directory: the versions its policy
// chooses that are not loaded yet or whose file changed are loaded and
// prepared, then published together; versions no longer chosen are
// withdrawn and closed when their last request ends. A version that fails to
// load keeps its previous copy, if any, in service.
func (r *Repository[M]) Load(ctx context.Context, name string) error {
	r.ops.Lock()
	defer r.ops.Unlock()
	r.mu.RLock()
	m := r.models[name]
	r.mu.RUnlock()
	if m != nil && m.static {
		return fmt.Errorf("model %q is built into the server, not in the repository directory", name)
	}
	return r.loadLocked(ctx, name)
}

// present is one version directory found on disk.
type present struct {
	n     int64
	path  string
	stamp string
	err   error
}

// listVersions reads DIR/NAME's version directories, ascending.
func listVersions(dir string) ([]present, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []present
	for _, e := range ents {
		n, err := strconv.ParseInt(e.Name(), 10, 64)
		if !e.IsDir() || err != nil || n < 1 || strconv.FormatInt(n, 10) != e.Name() {
			continue
		}
		p := present{n: n}
		var found []string
		for _, f := range modelFiles {
			path := filepath.Join(dir, e.Name(), f)
			if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
				found = append(found, path)
				p.stamp = fmt.Sprintf("%s|%d|%d", path, st.Size(), st.ModTime().UnixNano())
			}
		}
		switch len(found) {
		case 0:
			p.err = fmt.Errorf("version %d has none of %v", n, modelFiles)
		case 1:
			p.path = found[0]
		default:
			p.err = fmt.Errorf("version %d has both %v; keep one", n, modelFiles)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n < out[j].n })
	return out, nil
}

func (r *Repository[M]) loadLocked(ctx context.Context, name string) error {
	if r.dir == "" || !validName(name) {
		return fmt.Errorf("model %q is not served here: %w in the repository", name, ErrNotFound)
	}
	dir := filepath.Join(r.dir, name)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("model %q is not served here: %w in the repository", name, ErrNotFound)
	}
	fail := func(err error) error {
		r.mu.Lock()
		m := r.model(name)
		m.unloaded = false
		m.reason = err.Error()
		r.mu.Unlock()
		return fmt.Errorf("model %q: %w", name, err)
	}
	cfg, err := readConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return fail(err)
	}
	all, err := listVersions(dir)
	if err != nil {
		return fail(fmt.Errorf("reading versions: %w", err))
	}
	nums := make([]int64, len(all))
	for i, p := range all {
		nums[i] = p.n
	}
	chosen := cfg.VersionPolicy.choose(nums)
	if len(chosen) == 0 {
		return fail(errors.New("no version directory chosen by the version policy (want DIR/NAME/1/model.safetensors or model.onnx)"))
	}

	// Find what must be loaded, and mark it LOADING.
	r.mu.Lock()
	m := r.model(name)
	m.unloaded = false
	m.reason = ""
	var todo []present
	failed := map[int64]string{}
	for _, p := range all {
		if !slices.Contains(chosen, p.n) {
			continue
		}
		if p.err != nil {
			failed[p.n] = p.err.Error()
			continue
		}
		if old := m.versions[p.n]; old == nil || old.stamp != p.stamp {
			todo = append(todo, p)
			m.loading = append(m.loading, p.n)
		}
	}
	r.mu.Unlock()

	loaded := map[int64]*version[M]{}
	var errs []error
	for _, p := range todo {
		start := time.Now()
		mod, err := r.load(ctx, Spec{Name: name, Version: p.n, Path: p.path, Config: cfg})
		if err != nil {
			failed[p.n] = err.Error()
			errs = append(errs, fmt.Errorf("model %q version %d: %w", name, p.n, err))
			r.log.Warn("model version failed to load", "model", name, "version", p.n, "error", err)
			continue
		}
		v := &version[M]{n: p.n, stamp: p.stamp, m: mod}
		v.refs.Store(1)
		loaded[p.n] = v
		r.log.Info("model version loaded", "model", name, "version", p.n, "file", p.path, "took", time.Since(start))
	}

	// Publish: one swap under the lock.
	r.mu.Lock()
	next := map[int64]*version[M]{}
	var withdrawn []*version[M]
	for n, v := range m.versions {
		if loaded[n] != nil || !slices.Contains(chosen, n) {
			withdrawn = append(withdrawn, v)
		} else {
			// Still chosen and not reloaded: unchanged, or its new file
			// failed to load and the old copy keeps serving.
			next[n] = v
		}
	}
	for n, v := range loaded {
		next[n] = v
	}
	m.versions = next
	m.loading = nil
	m.failed = failed
	if len(next) == 0 {
		m.reason = "no version loaded"
		if len(errs) > 0 {
			m.reason = errors.Join(errs...).Error()
		}
	}
	r.mu.Unlock()
	for _, v := range withdrawn {
		r.log.Info("model version withdrawn; closes when its last request ends", "model", name, "version", v.n)
		v.drop()
	}
	return errors.Join(errs...)
}

// model returns name's state, creating it; r.mu must be held for writing.
func (r *Repository[M]) model(name string) *model[M] {
	m := r.models[name]
	if m == nil {
		m = &model[M]{versions: map[int64]*version[M]{}}
		r.models[name] = m
	}
	return m
}

// Unload withdraws every version of name; each closes when its last
// request ends. The model stays in the index as UNAVAILABLE and Scan leaves
// it unloaded until Load.
func (r *Repository[M]) Unload(name string) error {
	r.ops.Lock()
	defer r.ops.Unlock()
	r.mu.Lock()
	m := r.models[name]
	if m == nil {
		r.mu.Unlock()
		return fmt.Errorf("model %q is not served here: %w in the repository", name, ErrNotFound)
	}
	if m.static {
		r.mu.Unlock()
		return fmt.Errorf("model %q is built into the server and cannot be unloaded", name)
	}
	old := m.versions
	m.versions = map[int64]*version[M]{}
	m.failed = nil
	m.unloaded = true
	m.reason = "unloaded"
	r.mu.Unlock()
	for _, v := range old {
		v.drop()
	}
	r.log.Info("model unloaded", "model", name)
	return nil
}

// Close withdraws and closes every version at once, whatever references are
// still held (a shutting-down server has already drained its requests).
func (r *Repository[M]) Close() {
	r.ops.Lock()
	defer r.ops.Unlock()
	r.mu.Lock()
	models := r.models
	r.models = make(map[string]*model[M])
	r.mu.Unlock()
	for _, m := range models {
		for _, v := range m.versions {
			v.close()
		}
	}
}
