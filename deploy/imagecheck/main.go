// Command imagecheck proves the fashion container image without a Docker
// engine. It builds the release binary with deploy/build.sh (the script the
// Dockerfile's build stage runs), assembles the Dockerfile's final scratch
// stage as an OCI image with go-containerregistry, reports its compressed
// size and digest, writes it as an image tarball ("docker load -i" or
// "crane push" take it), then extracts the image's filesystem and runs
// "/fashion serve" chrooted into it as the image's non-root user, waits for
// /readyz and classifies one PNG over loopback.
//
// Run it through deploy/image-check, as root (chroot needs it):
//
//	deploy/image-check [-out image.tar] [-max-mb 15]
//
// It exits non-zero on any failure and removes everything it created except
// the -out tarball.
package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/fashion-classifier/fashion/internal/modelfile"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "image-check: FAIL: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stdout, "image-check: PASS")
}

// options are the command-line settings of one check.
type options struct {
	root         string        // module root holding Dockerfile and deploy/
	out          string        // where to keep the image tarball; "" removes it
	maxBytes     int64         // largest acceptable compressed image
	caBundle     string        // host CA bundle copied into the image
	readyTimeout time.Duration // how long the server may take to become ready
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("image-check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var maxMB float64
	fs.StringVar(&o.root, "root", ".", "module root `dir` (holds Dockerfile and deploy/build.sh)")
	fs.StringVar(&o.out, "out", "", "write the image tarball to `file` and keep it (default: temporary)")
	fs.Float64Var(&maxMB, "max-mb", 15, "fail if the compressed image is larger than this many MB (10^6 bytes)")
	fs.StringVar(&o.caBundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA certificates `file` to put in the image, as the Dockerfile's build stage does")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", time.Minute, "how long the server may take to answer /readyz with 200")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if maxMB <= 0 {
		return o, fmt.Errorf("-max-mb %v: must be positive", maxMB)
	}
	o.maxBytes = int64(maxMB * 1e6)
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: the server is started chrooted into the image filesystem and switched to the image's user, which needs root")
	}
	work, err := os.MkdirTemp("", "image-check-")
	if err != nil {
		return fmt.Errorf("creating work directory: %w", err)
	}
	defer os.RemoveAll(work)

	// 1. The release binary, built exactly as the Dockerfile builds it.
	bin := filepath.Join(work, "fashion")
	fmt.Fprintln(stdout, "==> building the release binary with deploy/build.sh")
	build := exec.CommandContext(ctx, "sh", filepath.Join("deploy", "build.sh"), bin)
	build.Dir = o.root
	build.Stdout, build.Stderr = stdout, stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("deploy/build.sh: %w", err)
	}
	stamp, err := hostVersion(ctx, bin)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "binary: version %s, commit %s\n", stamp.Version, stamp.Commit)

	// 2. The image, configured as the Dockerfile's final stage says.
	df, err := os.Open(filepath.Join(o.root, "Dockerfile"))
	if err != nil {
		return fmt.Errorf("opening Dockerfile: %w", err)
	}
	spec, err := parseDockerfile(df, map[string]string{"VERSION": stamp.Version, "COMMIT": stamp.Commit})
	df.Close()
	if err != nil {
		return err
	}
	if !spec.BuildScript {
		return errors.New("Dockerfile: no build-stage RUN calls deploy/build.sh, so the image would not contain the binary this check tests")
	}
	entries := rootfsFiles(bin, o.caBundle,
		filepath.Join(o.root, "deploy", "rootfs", "etc", "passwd"),
		filepath.Join(o.root, "deploy", "rootfs", "etc", "group"))
	if err := checkEntrypoint(spec, entries); err != nil {
		return err
	}
	img, err := assembleImage(entries, spec)
	if err != nil {
		return err
	}
	size, err := measure(img)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("computing image digest: %w", err)
	}
	fmt.Fprintf(stdout, "==> image assembled (scratch variant of the Dockerfile)\n")
	fmt.Fprintf(stdout, "image digest: %s\n", digest)
	fmt.Fprintf(stdout, "image size (compressed): %.2f MB (%d bytes: layers %v, config %d, manifest %d); limit %.2f MB\n",
		float64(size.Total())/1e6, size.Total(), size.Layers, size.Config, size.Manifest, float64(o.maxBytes)/1e6)
	if size.Total() > o.maxBytes {
		return fmt.Errorf("compressed image is %d bytes, over the %d-byte limit", size.Total(), o.maxBytes)
	}

	// 3. The image tarball, read back so what is tested is what was written.
	tarPath := o.out
	if tarPath == "" {
		tarPath = filepath.Join(work, "image.tar")
	}
	tag, err := name.NewTag("fashion-classifier:" + tagSafe(stamp.Version))
	if err != nil {
		return fmt.Errorf("naming image: %w", err)
	}
	if err := tarball.WriteToFile(tarPath, tag, img); err != nil {
		return fmt.Errorf("writing image tarball %s: %w", tarPath, err)
	}
	if fi, err := os.Stat(tarPath); err == nil {
		fmt.Fprintf(stdout, "image tarball: %s (%s, %d bytes)\n", tarPath, tag, fi.Size())
	}
	loaded, err := tarball.ImageFromPath(tarPath, &tag)
	if err != nil {
		return fmt.Errorf("reading back %s: %w", tarPath, err)
	}
	if err := sameContent(img, loaded); err != nil {
		return fmt.Errorf("image read back from %s differs from the one written: %w", tarPath, err)
	}
	rootfs := filepath.Join(work, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return fmt.Errorf("creating root filesystem directory: %w", err)
	}
	flat := mutate.Extract(loaded)
	err = extractRootfs(flat, rootfs, maxRootfsSize)
	flat.Close()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "==> image filesystem extracted to %s\n", rootfs)
	n, err := countCerts(filepath.Join(rootfs, "etc", "ssl", "certs", "ca-certificates.crt"))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "CA bundle: %d certificates (for fetching https:// image URLs)\n", n)

	// 4. The binary inside the image alone, as the image's user.
	j := jail{root: rootfs, uid: spec.Uid, gid: spec.Gid, env: imageConfig(spec).Env}
	out, err := j.output(ctx, spec.Entrypoint[0], "version", "-json")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "==> %s version -json (chroot, uid %d):\n%s", spec.Entrypoint[0], j.uid, out)
	var inside versionStamp
	if err := json.Unmarshal(out, &inside); err != nil {
		return fmt.Errorf("decoding version output from inside the image: %w", err)
	}
	if inside.Version != stamp.Version || inside.Commit != stamp.Commit {
		return fmt.Errorf("binary in the image reports %s/%s, built binary %s/%s", inside.Version, inside.Commit, stamp.Version, stamp.Commit)
	}

	// 5. The service inside the image, classifying over loopback.
	return serveAndClassify(ctx, j, spec, rootfs, o.readyTimeout, stdout)
}

// sameContent checks that b has a's config and layers. Manifest digests
// may differ: the docker-style tarball records no manifest, so a reader
// synthesises its own.
func sameContent(a, b v1.Image) error {
	ca, err := a.ConfigName()
	if err != nil {
		return fmt.Errorf("config digest: %w", err)
	}
	cb, err := b.ConfigName()
	if err != nil {
		return fmt.Errorf("config digest: %w", err)
	}
	if ca != cb {
		return fmt.Errorf("config digest %s, want %s", cb, ca)
	}
	la, err := a.Layers()
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	lb, err := b.Layers()
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	if len(la) != len(lb) {
		return fmt.Errorf("%d layers, want %d", len(lb), len(la))
	}
	for i := range la {
		da, err := la[i].DiffID()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		db, err := lb[i].DiffID()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		if da != db {
			return fmt.Errorf("layer %d has diff ID %s, want %s", i, db, da)
		}
	}
	return nil
}

// countCerts returns how many certificates the PEM bundle at path holds,
// failing when it holds none Go can use: without them every https:// fetch
// from inside the image would fail.
func countCerts(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading the image's CA bundle: %w", err)
	}
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err == nil {
			n++
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("the image's CA bundle %s holds no usable certificate", path)
	}
	return n, nil
}

// versionStamp is the part of "fashion version -json" the check compares.
type versionStamp struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
}

// hostVersion asks the freshly built binary which version and commit
// deploy/build.sh stamped into it, so labels and tags use the same values.
func hostVersion(ctx context.Context, bin string) (versionStamp, error) {
	var v versionStamp
	out, err := exec.CommandContext(ctx, bin, "version", "-json").Output()
	if err != nil {
		return v, fmt.Errorf("running %s version -json: %w", bin, err)
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return v, fmt.Errorf("decoding %s version -json: %w", bin, err)
	}
	return v, nil
}

// checkEntrypoint makes sure the Dockerfile's ENTRYPOINT starts a program
// the image actually contains.
func checkEntrypoint(spec *dockerImage, entries []rootfsEntry) error {
	if len(spec.Entrypoint) == 0 {
		return errors.New("Dockerfile: final stage has no ENTRYPOINT")
	}
	prog := strings.TrimPrefix(spec.Entrypoint[0], "/")
	for _, e := range entries {
		if e.Path == prog && !e.Mode.IsDir() && e.Mode&0o111 != 0 {
			return nil
		}
	}
	return fmt.Errorf("Dockerfile: ENTRYPOINT %q is not an executable file of the image", spec.Entrypoint[0])
}

var tagChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// tagSafe turns a version into a valid image tag.
func tagSafe(v string) string {
	v = tagChars.ReplaceAllString(v, "-")
	if v == "" || v[0] == '.' || v[0] == '-' {
		v = "v" + v
	}
	if len(v) > 128 {
		v = v[:128]
	}
	return v
}

// hostPort is the host side of the check's port mapping, as in the
// report's "docker run -d -p 8080:80 fashion_classifier"; a free port is
// used when something else holds it.
const hostPort = 8080

// serveAndClassify runs the image's entrypoint unchanged, as "docker run
// -p 8080:80" would: in a network namespace of its own (loopback only, low
// ports bindable by any user, as Docker sets up) with the host's 127.0.0.1:
// 8080 forwarded to the image's EXPOSEd port. It checks the server runs as
// the image's user inside rootfs, waits for /readyz, classifies one PNG
// through the published port, and stops it with SIGTERM, expecting a clean
// exit.
func serveAndClassify(ctx context.Context, j jail, spec *dockerImage, rootfs string, readyTimeout time.Duration, stdout io.Writer) error {
	port, err := exposedTCPPort(spec)
	if err != nil {
		return err
	}
	ns, err := newNetns()
	if err != nil {
		return err
	}
	defer ns.Close() // last: the server dies with the thread that started it
	l, err := listenHost(hostPort)
	if err != nil {
		return err
	}
	published := l.Addr().(*net.TCPAddr).Port
	forwarding := make(chan struct{})
	go func() {
		defer close(forwarding)
		publish(ctx, l, ns, "127.0.0.1:"+strconv.Itoa(port))
	}()
	defer func() {
		l.Close()
		<-forwarding
	}()
	base := "http://127.0.0.1:" + strconv.Itoa(published)

	argv := slices.Clone(spec.Entrypoint)
	cmd := j.command(ctx, argv...)
	logs := &tailBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = logs, logs
	fmt.Fprintf(stdout, "==> starting %q (chroot %s, uid %d:%d, own network namespace; host 127.0.0.1:%d -> container port %d, like docker run -p %d:%d)\n",
		argv, rootfs, j.uid, j.gid, published, port, published, port)
	ns.run(func() { err = cmd.Start() })
	if err != nil {
		return fmt.Errorf("starting %q in the image: %w", argv, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			// Kill the whole process group so nothing outlives the check.
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}()
	fail := func(err error) error {
		return fmt.Errorf("%w\nserver output (last %d bytes):\n%s", err, logs.max, logs.String())
	}

	uids, err := procIdentity(cmd.Process.Pid)
	if err != nil {
		return fail(err)
	}
	want := strconv.FormatUint(uint64(j.uid), 10)
	for _, u := range uids {
		if u != want {
			return fail(fmt.Errorf("server runs with uids %v, want all %s", uids, want))
		}
	}
	if r, err := os.Readlink(fmt.Sprintf("/proc/%d/root", cmd.Process.Pid)); err != nil || r != rootfs {
		return fail(fmt.Errorf("server's root is %q (error %v), want %s", r, err, rootfs))
	}
	fmt.Fprintf(stdout, "server pid %d runs as uid %s with root %s\n", cmd.Process.Pid, want, rootfs)

	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	start := time.Now()
	if err := waitReady(ctx, client, base+"/readyz", readyTimeout, exited); err != nil {
		stopped = errors.Is(err, errExited)
		return fail(err)
	}
	fmt.Fprintf(stdout, "GET /readyz: 200 after %v\n", time.Since(start).Round(time.Millisecond))
	if code, err := get(ctx, client, base+"/healthz"); err != nil || code != http.StatusOK {
		return fail(fmt.Errorf("GET /healthz: status %d, error %v; want 200", code, err))
	}
	fmt.Fprintln(stdout, "GET /healthz: 200")

	sample, err := samplePNG()
	if err != nil {
		return fail(err)
	}
	answer, err := classify(ctx, client, base+"/v1/classify", sample)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "POST /v1/classify (28x28 PNG) through host port %d -> container port %d answered:\n%s\n", published, port, answer)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fail(fmt.Errorf("sending SIGTERM to the server: %w", err))
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			return fail(fmt.Errorf("server did not exit cleanly on SIGTERM: %w", err))
		}
	case <-time.After(15 * time.Second):
		return fail(errors.New("server still running 15s after SIGTERM"))
	}
	fmt.Fprintln(stdout, "server exited cleanly on SIGTERM")
	return nil
}

// exposedTCPPort returns the one TCP port the Dockerfile EXPOSEs: the port
// users publish with "docker run -p HOST:PORT".
func exposedTCPPort(spec *dockerImage) (int, error) {
	var ports []int
	for _, p := range spec.ExposedPorts {
		if n, ok := strings.CutSuffix(p, "/tcp"); ok {
			v, err := strconv.Atoi(n)
			if err != nil {
				return 0, fmt.Errorf("Dockerfile: EXPOSE %q: %w", p, err)
			}
			ports = append(ports, v)
		}
	}
	if len(ports) != 1 {
		return 0, fmt.Errorf("Dockerfile: EXPOSE lists TCP ports %v, want exactly one for the service", ports)
	}
	return ports[0], nil
}

// errExited reports that the server exited before it became ready.
var errExited = errors.New("server exited")

// waitReady polls url until it answers 200, the timeout passes, or the
// server exits.
func waitReady(ctx context.Context, client *http.Client, url string, timeout time.Duration, exited <-chan error) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		code, err := get(ctx, client, url)
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = "status " + strconv.Itoa(code)
		}
		select {
		case err := <-exited:
			return fmt.Errorf("%w before %s answered 200 (exit: %v)", errExited, url, err)
		case <-deadline.C:
			return fmt.Errorf("%s not ready after %v: %s", url, timeout, last)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// get returns the status code of a GET of url.
func get(ctx context.Context, client *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// classification is the part of a /v1/classify answer the check verifies.
type classification struct {
	Label      string  `json:"label"`
	ClassID    int     `json:"class_id"`
	Confidence float64 `json:"confidence"`
}

// classify POSTs img as a raw PNG body and returns the indented JSON answer
// after checking it names one of the ten classes consistently.
func classify(ctx context.Context, client *http.Client, url string, img []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(img))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "image/png")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading answer of POST %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s: status %d, want 200; body: %s", url, resp.StatusCode, bytes.TrimSpace(body))
	}
	var c classification
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("POST %s: answer is not a classification: %w; body: %s", url, err, body)
	}
	if c.ClassID < 0 || c.ClassID >= len(modelfile.FashionClasses) || modelfile.FashionClasses[c.ClassID] != c.Label {
		return nil, fmt.Errorf("POST %s: label %q with class_id %d is not one of the ten classes; body: %s", url, c.Label, c.ClassID, body)
	}
	if !(c.Confidence > 0 && c.Confidence <= 1) {
		return nil, fmt.Errorf("POST %s: confidence %v is not in (0, 1]", url, c.Confidence)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, body, "", "  "); err != nil {
		return body, nil
	}
	return pretty.Bytes(), nil
}

// samplePNG draws a 28×28 Fashion-MNIST-style image, a bright pair of
// trousers on black, so the check needs no dataset.
func samplePNG() ([]byte, error) {
	img := image.NewGray(image.Rect(0, 0, modelfile.Side, modelfile.Side))
	for y := 2; y < 26; y++ {
		for x := 8; x < 20; x++ {
			leg := x < 13 || x > 14 // the gap between the legs
			if y < 8 || leg {
				img.SetGray(x, y, color.Gray{Y: 200})
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encoding the sample PNG: %w", err)
	}
	return buf.Bytes(), nil
}
