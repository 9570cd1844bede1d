package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fashion-classifier/fashion/internal/fetch"
)

// The hostile-target tests model an operator who allows one internal image
// host (127.0.0.2, standing in for 10.0.0.0/8) and a refused internal
// service (127.0.0.3, standing in for 169.254.169.254). Every byte goes over
// loopback. Fetch limits are small so the suite stays fast: the policy's
// timeout is hostileTimeout and its byte cap hostileCap.
const (
	hostileTimeout = time.Second
	hostileCap     = 1 << 20
)

// hostileTargets are the misbehaving web servers, all on one listener.
type hostileTargets struct {
	allowed, refused string // base URLs on 127.0.0.2 and 127.0.0.3
	refusedHits      atomic.Int64
	stop             chan struct{} // closed at cleanup to release stalled handlers
}

// listenLoopback listens on host (a 127.0.0.0/8 address) or skips the test
// where the system cannot bind such an address.
func listenLoopback(t *testing.T, host string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s (needs the whole 127.0.0.0/8 on lo): %v", host, err)
	}
	return ln
}

func startHostileTargets(t *testing.T) *hostileTargets {
	t.Helper()
	h := &hostileTargets{stop: make(chan struct{})}
	refusedLn := listenLoopback(t, "127.0.0.3")
	h.refused = "http://" + refusedLn.Addr().String()
	refused := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.refusedHits.Add(1)
		w.Write([]byte("instance credentials"))
	})}
	go refused.Serve(refusedLn)

	good, _ := testImage(t, 200)
	mux := http.NewServeMux()
	mux.HandleFunc("/trickle", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.WriteHeader(http.StatusOK)
		for i := 0; i < 30 && i < len(good); i++ { // at most 30 s, one byte a second
			w.Write(good[i : i+1])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-h.stop:
				return
			case <-time.After(time.Second):
			}
		}
	})
	mux.HandleFunc("/silent", func(w http.ResponseWriter, r *http.Request) {
		select { // never answers, until the client or the test gives up
		case <-r.Context().Done():
		case <-h.stop:
		case <-time.After(30 * time.Second):
		}
	})
	endless := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		chunk := bytes.Repeat([]byte{0x89, 'P', 'N', 'G'}, 8<<10)
		for sent := 0; sent < 100<<20; sent += len(chunk) { // bounded at 100 MB
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
	mux.HandleFunc("/endless", endless)
	mux.HandleFunc("/huge-declared", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10000000000")
		endless(w, r)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/to-refused", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, h.refused+"/latest/meta-data/iam/security-credentials/", http.StatusFound)
	})
	serve := func(path, contentType string, body []byte) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.Write(body)
		})
	}
	serve("/bomb.png", "image/png", pngBomb(t, 10000, 10000))
	serve("/lying", "text/html; charset=utf-8", good)
	serve("/truncated.jpg", "image/jpeg", truncatedJPEG(t))
	serve("/polyglot.png", "image/png", append(append([]byte(nil), good...), "<html><script>alert(document.cookie)</script></html>"...))
	serve("/polyglot.gif", "image/gif", []byte("GIF89a/*<html><script>alert(document.cookie)</script></html>*/"))

	allowedLn := listenLoopback(t, "127.0.0.2")
	h.allowed = "http://" + allowedLn.Addr().String()
	allowed := &http.Server{Handler: mux}
	go allowed.Serve(allowedLn)
	t.Cleanup(func() {
		close(h.stop)
		allowed.Close()
		refused.Close()
	})
	return h
}

// pngBomb returns a valid 1×1 grayscale PNG whose header claims w×h
// pixels: decoding it would need w×h bytes, DecodeConfig reads 33.
func pngBomb(t *testing.T, w, h uint32) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// Signature (8), IHDR length (4), "IHDR" (4), width, height, ...
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// truncatedJPEG returns the first half of a 64×64 JPEG.
func truncatedJPEG(t *testing.T) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 64, 64))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()[:buf.Len()/2]
}

// heapObjects is the live-and-unswept heap object bytes, read without
// stopping the world.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// heapWatch samples heapObjects every millisecond until stopped, keeping
// the peak.
type heapWatch struct {
	base uint64
	peak atomic.Uint64
	done chan struct{}
	wg   sync.WaitGroup
}

func watchHeap() *heapWatch {
	runtime.GC()
	w := &heapWatch{base: heapObjects(), done: make(chan struct{})}
	w.peak.Store(w.base)
	w.wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-tick.C:
				if v := heapObjects(); v > w.peak.Load() {
					w.peak.Store(v)
				}
			}
		}
	})
	return w
}

// stop returns the peak growth over the baseline, and the growth that
// remains after a collection.
func (w *heapWatch) stop() (peak, retained int64) {
	close(w.done)
	w.wg.Wait()
	runtime.GC()
	return int64(w.peak.Load()) - int64(w.base), int64(heapObjects()) - int64(w.base)
}

// reliabilityRecord is one line of the results table in docs/RELIABILITY.md;
// the tests log it as "RELIABILITY {json}" for bench/reliability to collect.
type reliabilityRecord struct {
	Scenario  string  `json:"scenario"`
	Sent      string  `json:"sent"`
	Got       string  `json:"got"`
	ElapsedMs float64 `json:"elapsed_ms"`
	Resources string  `json:"resources"`
	Pass      bool    `json:"pass"`
}

func logRecord(t *testing.T, r reliabilityRecord) {
	t.Helper()
	r.Pass = !t.Failed()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RELIABILITY %s", b)
}

func hostileConfig() Config {
	return Config{
		MaxBody: hostileCap,
		Fetch: fetch.Policy{
			AllowCIDRs:     []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
			Timeout:        hostileTimeout,
			ConnectTimeout: hostileTimeout / 2,
			MaxBytes:       hostileCap,
			MaxRedirects:   fetch.DefaultMaxRedirects,
		},
	}
}

// TestHostileFetchTargets sends /image-classify and /image-view requests
// that point at misbehaving servers and checks each gets a clear error
// quickly, without the server keeping more than a quarter of the byte cap
// after the request, or allocating more than three times the cap while
// reading (io.ReadAll's buffer doubling; five times under -race).
func TestHostileFetchTargets(t *testing.T) {
	h := startHostileTargets(t)
	ts := startServer(t, hostileConfig(), newFake())
	client := &http.Client{Timeout: 10 * time.Second}
	fast := 500 * time.Millisecond
	if raceEnabled {
		fast = 2 * time.Second
	}
	slow := hostileTimeout + fast // a timeout case: the policy's timeout plus slack

	tests := []struct {
		name, sent, endpoint, target string
		wantCode                     int
		wantMsg                      string // in the JSON error; "" for a 200
		maxTime                      time.Duration
	}{
		{"trickle 1 byte/s", "server sends headers, then one byte a second", "image-classify", h.allowed + "/trickle", 504, "did not deliver", slow},
		{"never answers", "server accepts and never responds", "image-classify", h.allowed + "/silent", 504, "", slow},
		{"endless body", "chunked body that never ends (bounded at 100 MB)", "image-classify", h.allowed + "/endless", 413, "limit", fast},
		{"huge Content-Length", "Content-Length: 10 GB", "image-classify", h.allowed + "/huge-declared", 413, "limit", fast},
		{"redirect loop", "302 to itself forever", "image-classify", h.allowed + "/loop", 502, "redirects", fast},
		{"redirect to refused host", "302 from 127.0.0.2 to 127.0.0.3 (metadata stand-in)", "image-classify", h.allowed + "/to-refused", 403, "refused", fast},
		{"refused host directly", "url on 127.0.0.3", "image-classify", h.refused + "/latest/meta-data/", 403, "refused", fast},
		{"decompression bomb", "PNG header claiming 10,000×10,000 pixels", "image-classify", h.allowed + "/bomb.png", 413, "10000×10000", fast},
		{"lying Content-Type", "valid PNG served as text/html", "image-classify", h.allowed + "/lying", 200, "", fast},
		{"lying Content-Type, view", "valid PNG served as text/html", "image-view", h.allowed + "/lying", 200, "", fast},
		{"truncated JPEG", "first half of a 64×64 JPEG", "image-classify", h.allowed + "/truncated.jpg", 400, "jpeg", fast},
		{"polyglot PNG+HTML", "valid PNG with an HTML/JS document after IEND", "image-classify", h.allowed + "/polyglot.png", 400, "polyglot", fast},
		{"polyglot PNG+HTML, view", "same, through /image-view", "image-view", h.allowed + "/polyglot.png", 400, "polyglot", fast},
		{"polyglot GIF/HTML", "GIF89a/*…*/ GIF/JavaScript polyglot", "image-classify", h.allowed + "/polyglot.gif", 413, "gif is 10799×26684", fast},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hw := watchHeap()
			start := time.Now()
			resp, err := client.Get(ts.url + "/" + tc.endpoint + "?url=" + url.QueryEscape(tc.target))
			if err != nil {
				hw.stop()
				t.Fatalf("request failed without an answer: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			elapsed := time.Since(start)
			peak, retained := hw.stop()
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			got := fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
			if resp.StatusCode != tc.wantCode {
				t.Errorf("status %d, want %d; body %.200s", resp.StatusCode, tc.wantCode, body)
			}
			if tc.wantCode != http.StatusOK {
				var e struct{ Error string }
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("error answer is not {\"error\": …} JSON: %.200s", body)
				}
				if !strings.Contains(strings.ToLower(e.Error), strings.ToLower(tc.wantMsg)) {
					t.Errorf("error %q does not mention %q", e.Error, tc.wantMsg)
				}
				got += ": " + e.Error
			} else if tc.endpoint == "image-view" {
				if ct := resp.Header.Get("Content-Type"); ct != "image/png" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
					t.Errorf("image-view answered Content-Type %q, nosniff %q; want image/png, nosniff", ct, resp.Header.Get("X-Content-Type-Options"))
				}
				if _, err := png.Decode(bytes.NewReader(body)); err != nil {
					t.Errorf("image-view answer is not a PNG: %v", err)
				}
			} else {
				var r Result
				if err := json.Unmarshal(body, &r); err != nil || r.Label == "" {
					t.Errorf("classification answer %.200s is not a result (%v)", body, err)
				}
				got += ": " + r.Label
			}
			if elapsed > tc.maxTime {
				t.Errorf("took %v, want at most %v", elapsed, tc.maxTime)
			}
			// io.ReadAll grows its buffer by doubling, so reading up to the
			// cap allocates about twice the cap before a collection; the
			// race detector's allocator adds more.
			peakLimit := int64(3 * hostileCap)
			if raceEnabled {
				peakLimit = 5 * hostileCap
			}
			if peak > peakLimit {
				t.Errorf("heap grew by %d bytes at the peak, more than %d (the cap is %d)", peak, peakLimit, hostileCap)
			}
			if retained > hostileCap/4 {
				t.Errorf("heap kept %d bytes after the request, want < cap/4 = %d", retained, hostileCap/4)
			}
			if n := h.refusedHits.Load(); n != 0 {
				t.Errorf("the refused host received %d requests", n)
			}
			logRecord(t, reliabilityRecord{
				Scenario: "hostile fetch: " + tc.name, Sent: "GET /" + tc.endpoint + "?url= → " + tc.sent, Got: got,
				ElapsedMs: float64(elapsed.Microseconds()) / 1000,
				Resources: fmt.Sprintf("heap peak +%.0f KiB, retained %+.0f KiB (cap %d KiB)", float64(peak)/1024, float64(retained)/1024, hostileCap>>10),
			})
		})
	}
}

// TestSlowTargetsDoNotTieUpWorkers keeps several fetches stalled on targets
// that never finish and checks that uploads are still answered at once, that
// the stalled requests end at the fetch timeout, and that no goroutine is
// left behind afterwards.
func TestSlowTargetsDoNotTieUpWorkers(t *testing.T) {
	h := startHostileTargets(t)
	ts := startServer(t, hostileConfig(), newFake())
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	png200, _ := testImage(t, 200)

	settle := func() int {
		client.CloseIdleConnections()
		http.DefaultClient.CloseIdleConnections() // do() uses it
		time.Sleep(50 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	before := settle()
	const stalled = 8
	var wg sync.WaitGroup
	durations := make([]time.Duration, stalled)
	codes := make([]int, stalled)
	start := time.Now()
	for i := range stalled {
		target := h.allowed + "/trickle"
		if i%2 == 1 {
			target = h.allowed + "/silent"
		}
		wg.Go(func() {
			t0 := time.Now()
			resp, err := client.Get(ts.url + "/image-classify?url=" + url.QueryEscape(target))
			if err != nil {
				t.Errorf("stalled request %d: %v", i, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			durations[i], codes[i] = time.Since(t0), resp.StatusCode
		})
	}
	time.Sleep(200 * time.Millisecond) // let the stalled fetches begin
	var uploadWorst time.Duration
	for range 5 {
		t0 := time.Now()
		r := do(t, "POST", ts.url+"/v1/classify", "image/png", png200)
		uploadWorst = max(uploadWorst, time.Since(t0))
		if r.code != http.StatusOK {
			t.Errorf("upload during stalled fetches: status %d: %s", r.code, r.body)
		}
	}
	limit := 200 * time.Millisecond
	if raceEnabled {
		limit = time.Second
	}
	if uploadWorst > limit {
		t.Errorf("uploads took up to %v while %d fetches were stalled, want < %v", uploadWorst, stalled, limit)
	}
	wg.Wait()
	all := time.Since(start)
	for i, d := range durations {
		if codes[i] != http.StatusGatewayTimeout || d > hostileTimeout+time.Second {
			t.Errorf("stalled request %d: status %d after %v, want 504 within %v", i, codes[i], d, hostileTimeout+time.Second)
		}
	}
	var after int
	deadline := time.Now().Add(3 * time.Second)
	for after = settle(); after > before && time.Now().Before(deadline); after = settle() {
	}
	if after > before {
		t.Errorf("%d goroutines after the stalled fetches ended, %d before", after, before)
	}
	logRecord(t, reliabilityRecord{
		Scenario:  "hostile fetch: 8 stalled fetches + uploads",
		Sent:      "4 × trickle + 4 × never-answers via /image-classify, then 5 uploads",
		Got:       fmt.Sprintf("uploads 200 in ≤ %v; stalled ones 504 after ≤ %v", uploadWorst.Round(time.Millisecond), slices.Max(durations).Round(time.Millisecond)),
		ElapsedMs: float64(all.Microseconds()) / 1000,
		Resources: fmt.Sprintf("goroutines %d before, %d after", before, after),
	})
}
