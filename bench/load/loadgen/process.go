package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FreeLoopbackAddr returns host:port of a TCP port that was free on the
// loopback address host a moment ago.
func FreeLoopbackAddr(host string) (string, error) {
	if err := checkLoopbackHost(host); err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("finding a free port on %s: %w", host, err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// ServerProcess is a "fashion serve" child process on a loopback address.
type ServerProcess struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:40123.
	URL string
	// Started is when the process was launched.
	Started time.Time

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // the process's exit status, set before exited is closed
	log    *tailBuffer
}

// StartServer launches bin ("fashion") as serve -addr <free loopback port>
// -grpc-addr "" (no gRPC listener, so runs never contend for :8081)
// followed by args. It returns as soon as the process runs; use WaitAnswer
// to wait for the first successful request.
func StartServer(bin string, args ...string) (*ServerProcess, error) {
	addr, err := FreeLoopbackAddr("127.0.0.1")
	if err != nil {
		return nil, err
	}
	p := &ServerProcess{URL: "http://" + addr, exited: make(chan struct{}), log: &tailBuffer{max: 64 << 10}}
	p.cmd = exec.Command(bin, append([]string{"serve", "-addr", addr, "-grpc-addr", ""}, args...)...)
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	p.Started = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s serve: %w", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// PID is the server's process id.
func (p *ServerProcess) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *ServerProcess) Exited() (bool, error) {
	select {
	case <-p.exited:
		return true, p.err
	default:
		return false, nil
	}
}

// Log returns the last 64 KiB the server wrote to stdout and stderr.
func (p *ServerProcess) Log() string { return p.log.String() }

// WaitAnswer sends t (relative to nothing: t.URL must be complete) every
// millisecond until it gets a 2xx answer, and returns the time from launch
// to that answer. It gives up after limit or if the process exits.
func (p *ServerProcess) WaitAnswer(ctx context.Context, client *http.Client, t Target, limit time.Duration) (time.Duration, error) {
	if err := t.Check(); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithDeadline(ctx, p.Started.Add(limit))
	defer cancel()
	for {
		o := send(ctx, client, t, 500*time.Millisecond)
		if o.status >= 200 && o.status < 300 {
			return time.Since(p.Started), nil
		}
		if done, err := p.Exited(); done {
			return 0, fmt.Errorf("server exited before answering (%v); its log:\n%s", err, p.Log())
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no successful answer to %s within %v (last: status %d %s); server log:\n%s", t.Name, limit, o.status, o.errKind, p.Log())
		case <-time.After(time.Millisecond):
		}
	}
}

// Memory is a process's resident memory from /proc/PID/status.
type Memory struct {
	// RSS is the current resident set (VmRSS), HWM its peak (VmHWM), bytes.
	RSS, HWM int64
}

// Memory reads the server's resident memory.
func (p *ServerProcess) Memory() (Memory, error) { return ReadMemory(p.PID()) }

// ReadMemory reads VmRSS and VmHWM of process pid.
func ReadMemory(pid int) (Memory, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	f, err := os.Open(path)
	if err != nil {
		return Memory{}, fmt.Errorf("reading memory of process %d: %w", pid, err)
	}
	defer f.Close()
	var m Memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("%s: %s line %q: %w", path, k, v, err)
		}
		if k == "VmRSS" {
			m.RSS = kb << 10
		} else {
			m.HWM = kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return Memory{}, fmt.Errorf("reading %s: %w", path, err)
	}
	if m.RSS == 0 {
		return Memory{}, fmt.Errorf("%s has no VmRSS line", path)
	}
	return m, nil
}

// Stop sends SIGTERM, waits up to grace for a clean exit, then kills the
// process. It returns the exit error of a process that did not exit
// cleanly.
func (p *ServerProcess) Stop(grace time.Duration) error {
	if done, err := p.Exited(); done {
		return fmt.Errorf("server had already exited: %v", err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signalling server: %w", err)
	}
	select {
	case <-p.exited:
		return p.err
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("server did not exit within %v of SIGTERM; killed", grace)
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// ImageServer serves fixed image bytes on a loopback address, standing in
// for the web servers /image-classify?url= fetches from.
type ImageServer struct {
	// URL is the address of the image, e.g. http://127.0.0.2:40000/item.png.
	URL string
	srv *http.Server
}

// StartImageServer serves body as contentType at /item.png on host (a
// loopback address such as 127.0.0.2) and any free port.
func StartImageServer(host string, body []byte, contentType string) (*ImageServer, error) {
	if err := checkLoopbackHost(host); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("image server on %s: %w", host, err)
	}
	length := strconv.Itoa(len(body))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /item.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Content-Length", length)
		w.Write(body)
	})
	s := &ImageServer{URL: "http://" + ln.Addr().String() + "/item.png", srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the image server.
func (s *ImageServer) Close() error { return s.srv.Close() }

// Scrape reads the named unlabelled series (such as go_goroutines and
// process_resident_memory_bytes) from the Prometheus text at base+"/metrics".
// A name the server does not expose is an error.
func Scrape(ctx context.Context, client *http.Client, base string, names ...string) (map[string]float64, error) {
	u := strings.TrimSuffix(base, "/") + "/metrics"
	if err := CheckLoopback(u); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", u, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: status %s", u, resp.Status)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	got := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || !want[name] {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(val)[0], 64)
		if err != nil {
			return nil, fmt.Errorf("scraping %s: series %s has value %q: %w", u, name, val, err)
		}
		got[name] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scraping %s: %w", u, err)
	}
	var missing []string
	for _, n := range names {
		if _, ok := got[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return got, fmt.Errorf("scraping %s: the server does not expose %s", u, strings.Join(missing, ", "))
	}
	return got, nil
}

// ItemPNG returns a 28×28 grayscale PNG that looks like a dataset image: a
// bright pair of trouser legs on black.
func ItemPNG() []byte {
	g := image.NewGray(image.Rect(0, 0, 28, 28))
	for y := 3; y < 26; y++ {
		for x := 8; x < 20; x++ {
			if y > 9 && x > 12 && x < 15 {
				continue // the gap between the legs
			}
			g.SetGray(x, y, color.Gray{Y: uint8(160 + (x+y)%60)})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, g); err != nil {
		panic(fmt.Sprintf("encoding an in-memory PNG: %v", err)) // cannot happen
	}
	return buf.Bytes()
}
