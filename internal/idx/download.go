package idx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fashion-classifier/fashion/internal/atomicfile"
	"github.com/schollz/progressbar/v3"
)

// DefaultBaseURL is the official Fashion-MNIST mirror.
const DefaultBaseURL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

// Download defaults and limits.
const (
	// DefaultBackoff is the wait before the first retry; it doubles with
	// every further retry, up to MaxBackoff.
	DefaultBackoff = time.Second
	// MaxBackoff caps the wait between two attempts.
	MaxBackoff = 30 * time.Second
	// MaxDownloadBytes caps the size of one downloaded file. The largest
	// official file is 26 MB compressed and 47 MB raw.
	MaxDownloadBytes = 64 << 20
)

// DownloadOptions configures Download. Only Dir is required.
type DownloadOptions struct {
	// BaseURL is where the files are downloaded from: each file is
	// fetched from BaseURL + Name + ".gz". Defaults to DefaultBaseURL.
	BaseURL string
	// Dir is the directory the files are written to; it is created if
	// needed.
	Dir string
	// Files lists the files to fetch with the SHA-256 of their
	// decompressed content. Defaults to OfficialFiles().
	Files []File
	// Client makes the requests. Defaults to a new client with no
	// timeout of its own; cancel ctx to stop.
	Client *http.Client
	// Retries is how many times a failed download is retried (so each
	// file gets at most Retries+1 attempts). Failures that cannot get
	// better by retrying (a 404, a checksum mismatch) are not retried.
	Retries int
	// Backoff is the wait before the first retry, doubled for each later
	// one (capped at MaxBackoff). Defaults to DefaultBackoff.
	Backoff time.Duration
	// Progress receives a progress bar per download and a line per
	// file; nil means silent.
	Progress io.Writer
}

// Download downloads the dataset files into opts.Dir. A file already present
// (raw or compressed) with the right checksum is skipped. Each download
// goes to a temporary file in the same directory, is synced to disk and
// has the checksum of its decompressed content verified before it is
// renamed into place, so a partial or corrupt download never appears
// under a final name. Transient failures are retried with exponential
// backoff; cancelling ctx stops Download promptly.
func Download(ctx context.Context, opts DownloadOptions) error {
	if opts.Dir == "" {
		return errors.New("no target directory given")
	}
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(opts.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("base URL %q is not an http(s) URL", opts.BaseURL)
	}
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
	}
	if opts.Files == nil {
		opts.Files = OfficialFiles()
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Retries < 0 {
		return fmt.Errorf("retries must not be negative, got %d", opts.Retries)
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return fmt.Errorf("creating target directory: %w", err)
	}
	for _, f := range opts.Files {
		if err := downloadFile(ctx, &opts, base, f); err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
	}
	return nil
}

// permanentError marks a download failure that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func downloadFile(ctx context.Context, opts *DownloadOptions, base *url.URL, f File) error {
	// A corrupt existing copy is replaced; one in the other format (raw
	// versus .gz) would shadow or duplicate the new file, so it is
	// removed once the new one is in place.
	var stale string
	if path, err := Locate(opts.Dir, f.Name); err == nil {
		_, sum, err := fileSHA256(path)
		if err == nil && sum == f.SHA256 {
			progressf(opts.Progress, "%s: already present and verified, skipping\n", path)
			return nil
		}
		progressf(opts.Progress, "%s: present but does not verify, downloading again\n", path)
		stale = path
	}
	u := base.ResolveReference(&url.URL{Path: f.Name + ".gz"})
	delay := opts.Backoff
	for attempt := 0; ; attempt++ {
		final, err := download(ctx, opts, u.String(), f)
		if err == nil {
			if stale != "" && stale != final {
				if err := os.Remove(stale); err != nil {
					return fmt.Errorf("removing the corrupt copy %s: %w", stale, err)
				}
			}
			return nil
		}
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			return fmt.Errorf("%w (while attempt %d failed: %v)", ctx.Err(), attempt+1, err)
		}
		var perm *permanentError
		if ctx.Err() != nil || errors.As(err, &perm) || attempt >= opts.Retries {
			if attempt > 0 {
				return fmt.Errorf("after %d attempts: %w", attempt+1, err)
			}
			return err
		}
		progressf(opts.Progress, "%s: attempt %d failed: %v; retrying in %v\n", f.Name, attempt+1, err, delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting to retry after %v: %w", err, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, MaxBackoff)
	}
}

// download makes one attempt at fetching url into opts.Dir and returns the
// final path. On failure nothing is left behind.
func download(ctx context.Context, opts *DownloadOptions, rawURL string, f File) (final string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return "", &permanentError{err}
	}
	resp, err := opts.Client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("GET %s: %s", rawURL, resp.Status)
		retryable := resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests
		if !retryable {
			return "", &permanentError{err}
		}
		return "", err
	}
	if resp.ContentLength > MaxDownloadBytes {
		return "", &permanentError{fmt.Errorf("GET %s: %d bytes is more than the limit of %d", rawURL, resp.ContentLength, MaxDownloadBytes)}
	}

	tmp, err := atomicfile.Create(filepath.Join(opts.Dir, f.Name))
	if err != nil {
		return "", &permanentError{err}
	}
	defer tmp.Discard()

	var body io.Reader = resp.Body
	var bar *progressbar.ProgressBar
	if opts.Progress != nil {
		bar = newBar(opts.Progress, resp.ContentLength, f.Name+".gz")
		body = &barReader{r: body, bar: bar}
		defer func() {
			if err != nil && !bar.IsFinished() {
				_ = bar.Exit()
			}
		}()
	}
	n, err := io.Copy(tmp, io.LimitReader(body, MaxDownloadBytes+1))
	if err != nil {
		return "", fmt.Errorf("GET %s: reading body after %d bytes: %w", rawURL, n, err)
	}
	if n > MaxDownloadBytes {
		return "", &permanentError{fmt.Errorf("GET %s: body is more than the limit of %d bytes", rawURL, MaxDownloadBytes)}
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return "", fmt.Errorf("GET %s: got %d of %d bytes", rawURL, n, resp.ContentLength)
	}
	if bar != nil {
		_ = bar.Finish()
	}

	// Verify what is on disk, not what went through memory, so the check
	// covers the bytes that will be renamed into place.
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return "", &permanentError{fmt.Errorf("rewinding %s: %w", tmp.Name(), err)}
	}
	br := bufio.NewReader(tmp)
	magic, _ := br.Peek(2)
	gzipped := len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b
	sum, err := contentSHA256(br)
	if err != nil {
		return "", &permanentError{fmt.Errorf("GET %s: downloaded data: %w", rawURL, err)}
	}
	if sum != f.SHA256 {
		return "", &permanentError{fmt.Errorf("GET %s: checksum mismatch: SHA-256 of the decompressed data is %s, want %s", rawURL, sum, f.SHA256)}
	}
	// The name follows the content, so a mirror that serves raw files
	// does not produce a misleading ".gz".
	final = filepath.Join(opts.Dir, f.Name)
	if gzipped {
		final += ".gz"
	}
	if err := tmp.CommitAs(final); err != nil {
		return "", &permanentError{err}
	}
	progressf(opts.Progress, "%s: downloaded and verified\n", final)
	return final, nil
}

func newBar(w io.Writer, size int64, desc string) *progressbar.ProgressBar {
	if size <= 0 {
		size = -1 // unknown length: the bar shows bytes and rate only
	}
	return progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		// No background spinner goroutine for unknown lengths.
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
}

// barReader advances a progress bar as data is read. The bar is only a
// display, so its errors (such as a server sending more than it announced)
// are ignored; the download checks sizes itself.
type barReader struct {
	r   io.Reader
	bar *progressbar.ProgressBar
}

func (b *barReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	_ = b.bar.Add(n)
	return n, err
}

func progressf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format, args...)
	}
}
