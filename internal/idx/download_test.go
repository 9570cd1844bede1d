package idx

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// mirror is a local stand-in for the dataset mirror. It serves body(name)
// for "/<name>.gz" and can fail the first requests.
type mirror struct {
	mu       sync.Mutex
	requests []string
	// failFirst requests are answered with failStatus.
	failFirst  int
	failStatus int
	// body returns what to serve for a file, or nil for a 404.
	body func(name string) []byte
	// onRequest, if set, runs at the start of every request.
	onRequest func()
}

func (m *mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m.onRequest != nil {
		m.onRequest()
	}
	m.mu.Lock()
	m.requests = append(m.requests, r.URL.Path)
	n := len(m.requests)
	m.mu.Unlock()
	if n <= m.failFirst {
		http.Error(w, "try again later", m.failStatus)
		return
	}
	name, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/mirror/"), ".gz")
	var body []byte
	if ok {
		body = m.body(name)
	}
	if body == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(body)
}

func (m *mirror) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.requests)
}

// serveGzipped returns a body function serving the fixture gzipped, as the
// real mirror does.
func serveGzipped(t *testing.T, fx fixture) func(string) []byte {
	zipped := map[string][]byte{}
	for name, raw := range fx.raw {
		zipped[name] = gz(t, raw)
	}
	return func(name string) []byte { return zipped[name] }
}

func downloadOptions(srv *httptest.Server, dir string, fx fixture) DownloadOptions {
	return DownloadOptions{
		BaseURL: srv.URL + "/mirror", // without the trailing slash on purpose
		Dir:     dir,
		Files:   fx.files,
		Client:  srv.Client(),
		Retries: 3,
		Backoff: time.Millisecond,
	}
}

// dirEntries lists the names in dir, to show what a fetch left behind.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func gzNames() []string {
	var names []string
	for _, n := range Names() {
		names = append(names, n+".gz")
	}
	slices.Sort(names)
	return names
}

func TestDownload(t *testing.T) {
	fx := newFixture(t, 4, 3)
	tests := []struct {
		name       string
		failFirst  int
		failStatus int
		retries    int
		body       func(t *testing.T) func(string) []byte
		wantErr    string // substring; empty for success
		wantReqs   int
		wantFiles  []string
	}{
		{
			name: "success", body: func(t *testing.T) func(string) []byte { return serveGzipped(t, fx) },
			retries: 3, wantReqs: 4, wantFiles: gzNames(),
		},
		{
			name: "retries transient failures", failFirst: 2, failStatus: http.StatusServiceUnavailable,
			body:    func(t *testing.T) func(string) []byte { return serveGzipped(t, fx) },
			retries: 2, wantReqs: 6, wantFiles: gzNames(),
		},
		{
			name: "gives up after the retries", failFirst: 100, failStatus: http.StatusBadGateway,
			body:    func(t *testing.T) func(string) []byte { return serveGzipped(t, fx) },
			retries: 2, wantReqs: 3, wantErr: "after 3 attempts: GET ",
		},
		{
			name: "no retry on 404", body: func(*testing.T) func(string) []byte { return func(string) []byte { return nil } },
			retries: 3, wantReqs: 1, wantErr: "404 Not Found",
		},
		{
			name: "checksum mismatch leaves nothing", retries: 3, wantReqs: 1,
			body: func(t *testing.T) func(string) []byte {
				return func(name string) []byte {
					d := bytes.Clone(fx.raw[name])
					d[len(d)-1] ^= 0xff
					return gz(t, d)
				}
			},
			wantErr: "checksum mismatch: SHA-256 of the decompressed data is",
		},
		{
			name: "corrupt gzip leaves nothing", retries: 3, wantReqs: 1,
			body: func(t *testing.T) func(string) []byte {
				return func(name string) []byte {
					z := gz(t, fx.raw[name])
					return z[:len(z)-5]
				}
			},
			wantErr: "corrupt gzip data",
		},
		{
			name: "raw files keep raw names", retries: 0, wantReqs: 4, wantFiles: Names(),
			body: func(*testing.T) func(string) []byte { return func(name string) []byte { return fx.raw[name] } },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &mirror{failFirst: tt.failFirst, failStatus: tt.failStatus, body: tt.body(t)}
			srv := httptest.NewServer(m)
			defer srv.Close()
			dir := filepath.Join(t.TempDir(), "data")
			opts := downloadOptions(srv, dir, fx)
			opts.Retries = tt.retries
			err := Download(context.Background(), opts)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Download: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Download error %v, want one containing %q", err, tt.wantErr)
			}
			if got := m.count(); got != tt.wantReqs {
				t.Errorf("server got %d requests, want %d", got, tt.wantReqs)
			}
			want := slices.Clone(tt.wantFiles)
			slices.Sort(want)
			if got := dirEntries(t, dir); !slices.Equal(got, want) {
				t.Errorf("directory holds %v, want %v", got, want)
			}
			if err == nil {
				// What was fetched must load and verify.
				if _, err := verifyFiles(dir, fx.files); err != nil {
					t.Errorf("fetched files do not verify: %v", err)
				}
				if _, err := Load(dir); err != nil {
					t.Errorf("fetched files do not load: %v", err)
				}
			}
		})
	}
}

func TestDownloadSkipsValidAndReplacesCorrupt(t *testing.T) {
	fx := newFixture(t, 4, 3)
	m := &mirror{body: serveGzipped(t, fx)}
	srv := httptest.NewServer(m)
	defer srv.Close()
	dir := t.TempDir()
	// A good raw copy stays, a corrupt raw copy is replaced by the .gz.
	fx.write(t, dir)
	bad := filepath.Join(dir, TestLabelsName)
	writeFile(t, bad, encodeLabels(t, []uint8{1, 2, 3}))

	var progress bytes.Buffer
	opts := downloadOptions(srv, dir, fx)
	opts.Progress = &progress
	if err := Download(context.Background(), opts); err != nil {
		t.Fatalf("Download: %v", err)
	}
	if m.count() != 1 || m.requests[0] != "/mirror/"+TestLabelsName+".gz" {
		t.Errorf("requests %v, want only %s.gz", m.requests, TestLabelsName)
	}
	want := []string{TestImagesName, TestLabelsName + ".gz", TrainImagesName, TrainLabelsName}
	if got := dirEntries(t, dir); !slices.Equal(got, want) {
		t.Errorf("directory holds %v, want %v", got, want)
	}
	for _, w := range []string{"already present and verified, skipping", "present but does not verify", "downloaded and verified"} {
		if !strings.Contains(progress.String(), w) {
			t.Errorf("progress output lacks %q:\n%s", w, progress.String())
		}
	}

	// A second run has nothing to do.
	if err := Download(context.Background(), opts); err != nil {
		t.Fatalf("second Download: %v", err)
	}
	if m.count() != 1 {
		t.Errorf("second Download made %d more requests, want none", m.count()-1)
	}
}

func TestDownloadCancel(t *testing.T) {
	fx := newFixture(t, 2, 2)
	t.Run("before start", func(t *testing.T) {
		m := &mirror{body: serveGzipped(t, fx)}
		srv := httptest.NewServer(m)
		defer srv.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		dir := t.TempDir()
		err := Download(ctx, downloadOptions(srv, dir, fx))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Download error %v, want context.Canceled", err)
		}
		if got := dirEntries(t, dir); len(got) != 0 {
			t.Errorf("cancelled Download left %v", got)
		}
	})
	t.Run("during backoff", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// The server always fails and cancels the context on the first
		// request; the hour-long backoff must not be waited out.
		m := &mirror{failFirst: 1 << 30, failStatus: http.StatusServiceUnavailable, body: serveGzipped(t, fx), onRequest: cancel}
		srv := httptest.NewServer(m)
		defer srv.Close()
		opts := downloadOptions(srv, t.TempDir(), fx)
		opts.Backoff = time.Hour
		start := time.Now()
		err := Download(ctx, opts)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Download error %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Download took %v after cancellation", d)
		}
		if m.count() != 1 {
			t.Errorf("server got %d requests, want 1", m.count())
		}
	})
	t.Run("during download", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// The server sends half a file, cancels the context and stalls.
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body := gz(t, fx.raw[TrainImagesName])
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			cancel()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		defer close(release)
		dir := t.TempDir()
		err := Download(ctx, downloadOptions(srv, dir, fx))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Download error %v, want context.Canceled", err)
		}
		if got := dirEntries(t, dir); len(got) != 0 {
			t.Errorf("cancelled download left %v", got)
		}
	})
}

func TestDownloadOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		opts DownloadOptions
		want string
	}{
		{"no dir", DownloadOptions{}, "no target directory"},
		{"bad scheme", DownloadOptions{Dir: t.TempDir(), BaseURL: "ftp://example.invalid/"}, "not an http(s) URL"},
		{"negative retries", DownloadOptions{Dir: t.TempDir(), BaseURL: "http://127.0.0.1:1/", Retries: -1}, "retries must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Download(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Download error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestDownloadProgressBar(t *testing.T) {
	fx := newFixture(t, 2, 2)
	m := &mirror{body: serveGzipped(t, fx)}
	srv := httptest.NewServer(m)
	defer srv.Close()
	var progress bytes.Buffer
	opts := downloadOptions(srv, t.TempDir(), fx)
	opts.Progress = &progress
	if err := Download(context.Background(), opts); err != nil {
		t.Fatalf("Download: %v", err)
	}
	out := progress.String()
	for _, name := range Names() {
		if !strings.Contains(out, name+".gz") {
			t.Errorf("progress output does not mention %s.gz:\n%s", name, out)
		}
	}
	if !strings.Contains(out, "100%") {
		t.Errorf("progress output never reaches 100%%:\n%s", out)
	}
}
